from django.conf import settings
from django.urls import reverse

from accounts.selectors import tenant_get
from billing.money import format_micros
from billing.payments import topup_create
from common.cli import JsonCommand


class Command(JsonCommand):
    help = "Create a Stripe Checkout link for a tenant's top-up (to send with an invoice); only the verified webhook credits it."

    def add_args(self, parser) -> None:
        parser.add_argument("tenant", help="tenant name or id")
        parser.add_argument("--balance", required=True, choices=["credit", "wallet"])
        parser.add_argument("--amount", required=True, help="in the balance's currency units (Credit USD, Wallet CNY)")
        parser.add_argument("--method", choices=["card", "alipay", "wechat_pay"], help="default: the first enabled for the currency")

    def run(self, *, tenant, balance, amount, method, **_):
        owner = tenant_get(ref=tenant)
        base = (settings.PUBLIC_BASE_URL or "http://127.0.0.1:8000").rstrip("/")
        payment = topup_create(
            tenant_id=owner.pk, kind=balance, amount=amount, method=method,
            success_url=base + reverse("billing:topup_success") + "?session_id={CHECKOUT_SESSION_ID}",
            cancel_url=base + reverse("billing:topup_cancel") + "?session_id={CHECKOUT_SESSION_ID}",
        )
        result = {
            "id": payment.pk,
            "session_id": payment.session_id,
            "url": payment.checkout_url,
            "tenant": owner.name,
            "balance": payment.balance_kind,
            "currency": payment.currency,
            "amount_micros": payment.amount_micros,
            "method": payment.method,
            "status": payment.status,
        }
        return result, f"{owner.name} {balance}: pay {format_micros(payment.amount_micros)} {payment.currency} at {payment.checkout_url}"
