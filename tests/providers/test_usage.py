"""Usage reports are parsed, not trusted: whatever an upstream sends, the parser returns a sane
Usage or None, and never raises."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from providers.base import Usage
from providers.usage import MAX_TOKENS, usage_from_anthropic, usage_from_gemini, usage_from_openai, usage_from_responses

PARSERS = [usage_from_openai, usage_from_responses, usage_from_anthropic, usage_from_gemini]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=10,
)
FIELDS = [
    "prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details", "cached_tokens", "prompt_cache_hit_tokens",
    "input_tokens", "output_tokens", "input_tokens_details", "output_tokens_details", "cache_read_input_tokens", "cache_creation_input_tokens",
    "promptTokenCount", "candidatesTokenCount", "cachedContentTokenCount", "thoughtsTokenCount", "toolUsePromptTokenCount",
]
usage_like = st.dictionaries(st.sampled_from(FIELDS), json_values | st.integers(min_value=-10, max_value=10**12)) | json_values


def assert_sane(usage):
    assert usage is None or isinstance(usage, Usage)
    if usage is not None:
        for value in (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens, usage.cache_creation_tokens):
            assert type(value) is int and 0 <= value <= MAX_TOKENS
        assert usage.cached_tokens + usage.cache_creation_tokens <= usage.prompt_tokens


@settings(max_examples=300, deadline=None)
@given(report=usage_like, details=json_values)
def test_any_json_gives_a_sane_usage_or_none_and_never_raises(report, details):
    for parse in PARSERS:
        assert_sane(parse(report))
    if isinstance(report, dict):
        assert_sane(usage_from_openai({**report, "prompt_tokens_details": details}))
        assert_sane(usage_from_openai(report, has_completion=False))
        assert_sane(usage_from_responses({**report, "input_tokens_details": details, "output_tokens_details": details}))


@pytest.mark.parametrize(
    "bad", ["12", 12.0, -1, -1_000_000, None, [12], {"n": 12}, True, False, MAX_TOKENS + 1, 10**30],
)
def test_a_count_that_is_not_a_plain_count_makes_the_report_missing(bad):
    assert usage_from_openai({"prompt_tokens": bad, "completion_tokens": 5}) is None
    assert usage_from_openai({"prompt_tokens": 5, "completion_tokens": bad}) is None
    assert usage_from_anthropic({"input_tokens": bad, "output_tokens": 5}) is None
    assert usage_from_anthropic({"input_tokens": 5, "output_tokens": bad}) is None
    assert usage_from_responses({"input_tokens": bad, "output_tokens": 5}) is None
    assert usage_from_responses({"input_tokens": 5, "output_tokens": bad}) is None
    assert usage_from_gemini({"promptTokenCount": bad, "candidatesTokenCount": 5}) is None


def test_a_missing_completion_count_is_missing_except_where_the_format_leaves_zero_out():
    assert usage_from_openai({"prompt_tokens": 5}) is None
    assert usage_from_openai({"prompt_tokens": 5, "total_tokens": 5}, has_completion=False) == Usage(5, 0)
    assert usage_from_gemini({"promptTokenCount": 5}) == Usage(5, 0)
    assert usage_from_gemini({"promptTokenCount": 5, "candidatesTokenCount": None}) is None


def test_cached_tokens_above_the_prompt_are_clamped():
    assert usage_from_openai({"prompt_tokens": 10, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": 50}}) == Usage(10, 1, 10)
    assert usage_from_gemini({"promptTokenCount": 10, "candidatesTokenCount": 1, "cachedContentTokenCount": 99}) == Usage(10, 1, 10)
    assert usage_from_openai({"prompt_tokens": 10, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": "x"}}) == Usage(10, 1, 0)


def test_good_reports_are_read_as_each_vendor_means_them():
    assert usage_from_openai(
        {"prompt_tokens": 100, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 40, "cache_write_tokens": 10}}
    ) == Usage(100, 7, 40, 10)
    assert usage_from_openai({"prompt_tokens": 100, "completion_tokens": 7, "prompt_cache_hit_tokens": 30}) == Usage(100, 7, 30)
    assert usage_from_anthropic(
        {"input_tokens": 10, "output_tokens": 3, "cache_read_input_tokens": 20, "cache_creation_input_tokens": 5}
    ) == Usage(35, 3, 20, 5)
    assert usage_from_gemini(
        {"promptTokenCount": 10, "candidatesTokenCount": 3, "thoughtsTokenCount": 4, "toolUsePromptTokenCount": 2}
    ) == Usage(12, 7)


def test_a_responses_report_is_read_with_its_cache_and_reasoning_details():
    report = {
        "input_tokens": 100, "input_tokens_details": {"cached_tokens": 40},
        "output_tokens": 30, "output_tokens_details": {"reasoning_tokens": 20}, "total_tokens": 130,
    }
    assert usage_from_responses(report) == Usage(100, 30, 40)
    assert usage_from_responses({"input_tokens": 10, "output_tokens": 1, "input_tokens_details": {"cached_tokens": 99}}) == Usage(10, 1, 10)
    assert usage_from_responses({"input_tokens": 10}) is None  # no output count: counted instead


def test_responses_output_is_never_billed_below_its_own_reasoning_part():
    """An upstream that counts reasoning apart from output (or lies low) still pays for it."""
    report = {"input_tokens": 10, "output_tokens": 2, "output_tokens_details": {"reasoning_tokens": 500}}
    assert usage_from_responses(report) == Usage(10, 500)
    lying = {"input_tokens": 10, "output_tokens": 2, "output_tokens_details": {"reasoning_tokens": 10**12}}
    assert usage_from_responses(lying) == Usage(10, 2)  # not a count: ignored
