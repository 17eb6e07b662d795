from __future__ import annotations

from django import forms
from django.conf import settings

from billing.money import parse_micros

from .models import MAX_DEPTH
from .services import MODES


class ResearchForm(forms.Form):
    question = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=4000)
    depth = forms.IntegerField(min_value=1, max_value=MAX_DEPTH, initial=3, help_text=f"Sub-questions, 1 to {MAX_DEPTH}.")
    models = forms.CharField(help_text="Comma-separated model ids; the first plans and summarises.")
    mode = forms.ChoiceField(
        choices=[(m, "one model per section" if m == "single" else m) for m in MODES], initial="single",
        help_text="How each section is drafted: one model, or an orchestration over the models.",
    )
    max_cost = forms.CharField(label="Cost ceiling (USD)", initial="1", help_text="The run stops cleanly when it is spent.")
    sources_text = forms.CharField(
        label="Sources (pasted)", required=False, widget=forms.Textarea(attrs={"rows": 4}),
        help_text="Separate sources with a line holding only ---.",
    )
    source_files = forms.FileField(
        label="Sources (text or PDF files)", required=False,
        widget=forms.ClearableFileInput(attrs={"accept": ".txt,.md,.pdf,text/plain,application/pdf"}),
    )
    use_web_search = forms.BooleanField(label="Search the web", required=False)

    def clean_models(self) -> list[str]:
        return [m.strip() for m in self.cleaned_data["models"].replace("\n", ",").split(",") if m.strip()]

    def clean_max_cost(self) -> int:
        try:
            micros = parse_micros(self.cleaned_data["max_cost"].strip(), what="cost ceiling")
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None
        if micros <= 0:
            raise forms.ValidationError("The cost ceiling must be above 0.")
        return micros

    def clean_use_web_search(self) -> bool:
        wanted = self.cleaned_data["use_web_search"]
        if wanted and not settings.RESEARCH_SEARCH_URL:
            raise forms.ValidationError("Web search is not configured on this TokenHub.")
        return wanted
