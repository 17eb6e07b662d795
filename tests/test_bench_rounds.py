"""bench/run.py --rounds: cells measured several times, interleaved, reported as medians, and
the ratios against LiteLLM with how far they moved from round to round (pure functions; the
benchmark itself is run by `make bench`, never by the suite)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import run  # noqa: E402


def cell(target, p50, added, cpu, rps, *, mode="plain", concurrency=1, errors=0):
    return {
        "target": target, "mode": mode, "concurrency": concurrency, "requests": 100, "errors": errors,
        "error_kinds": {"timeout": errors} if errors else {}, "rps": rps, "p50_ms": p50, "p90_ms": p50, "p99_ms": p50 * 2,
        "ttfc_p50_ms": None, "ttfc_p99_ms": None, "added_p50_ms": added, "rps_ratio": 0.01,
        "cpu_ms_per_req": {"relay": cpu, "upstream": 0.05}, "cpu_s_per_process": {"relay": [0.5, 0.1], "upstream": [0.1]},
        "loadgen_cpu_ms_per_req": 0.1, "upstream_new_connections": 0, "upstream_requests_per_request": 1.0,
        "machine_busy_pct": 50.0, "other_procs_cpu_pct": 1.0,
    }


def test_a_cell_over_rounds_is_the_median_of_each_figure_and_keeps_each_round():
    rounds = [cell("tokenhub/uvicorn", 2.0, 1.9, 1.5, 400, errors=1), cell("tokenhub/uvicorn", 9.0, 8.9, 6.0, 100),
              cell("tokenhub/uvicorn", 3.0, 2.9, 2.0, 300)]
    merged = run.median_cell(rounds)
    assert (merged["p50_ms"], merged["added_p50_ms"], merged["rps"]) == (3.0, 2.9, 300)
    assert merged["cpu_ms_per_req"] == {"relay": 2.0, "upstream": 0.05}
    assert (merged["requests"], merged["errors"], merged["error_kinds"]) == (300, 1, {"timeout": 1})
    assert merged["cpu_s_per_process"]["relay"] == [1.5, 0.3]
    assert [r["added_p50_ms"] for r in merged["rounds"]] == [1.9, 8.9, 2.9]
    assert run.median_cell(rounds[:1]) is rounds[0]  # one round: the cell as measured


def test_the_summary_sets_medians_against_litellm_and_says_how_far_each_round_moved():
    ours = run.median_cell([cell("tokenhub/uvicorn", 2.0, 2.0, 1.0, 400), cell("tokenhub/uvicorn", 4.0, 4.0, 2.0, 200)])
    theirs = run.median_cell([cell("litellm", 20.0, 20.0, 10.0, 40), cell("litellm", 20.0, 20.0, 18.0, 30)])
    summary = run.summarize("uvicorn", [ours, theirs])
    assert summary["vs_litellm"]["added_p50"] == 20.0 / 3.0
    assert summary["vs_litellm_per_round"]["added_p50"] == [5.0, 10.0]  # 20/4 in the slow round, 20/2 in the fast
    assert summary["vs_litellm_per_round"]["cpu_plain"] == [9.0, 10.0]
    added = next(line for line in summary["lines"] if line.startswith("added p50"))
    assert "6.7x, 5.0x to 10.0x over 2 rounds (target 8x: NOT met)" in added
    assert sum(line.startswith("non-streamed req/s at c=1") for line in summary["lines"]) == 1
