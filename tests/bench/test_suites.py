"""attnkit.bench.suites and runner: configurations, rows and the in-process run (times never asserted)."""

from __future__ import annotations

import pytest

from attnkit.bench import Options, memory, rows, suites


def test_dot_configs_keep_the_token_budget():
    cfgs = suites.configs("dot", ["fwd"], None, quick=False)
    # H=8/E=64 and H=4/E=128, five N each; B * N = 4096 tokens
    assert len(cfgs) == 10
    assert [(c["shape"]["B"], c["shape"]["N"]) for c in cfgs[:5]] == [(16, 256), (8, 512), (4, 1024), (2, 2048),
                                                                       (1, 4096)]


def test_mha_configs_cover_need_weights_and_additive_huge_runs_once():
    mha = suites.configs("mha", ["fwd", "fwd+bwd"], [512], quick=False)
    assert [(c["mode"], c["shape"]["need_weights"]) for c in mha[:4]] == [
        ("fwd", False), ("fwd", True), ("fwd+bwd", False), ("fwd+bwd", True)]
    additive = suites.configs("additive", ["fwd"], None, quick=False)
    assert [c["shape"]["N"] for c in additive] == [256, 512, 1024, 8192]
    assert (additive[-1]["warmup"], additive[-1]["repeats"]) == (0, 1)
    assert "repeats" not in additive[0]


def test_unknown_suite_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown suite 'flash'; choose from dot, mha, additive"):
        suites.configs("flash", ["fwd"], None, quick=True)


def test_needed_bytes_of_the_naive_formula():
    # B=4, H=1, N=1024, D=128: 4 * 1024 * 1024 * 128 pairs·D, float32, three live copies
    cfg = {"suite": "additive", "impl": "naive_eager", "mode": "fwd",
           "shape": {"B": 4, "H": 1, "N": 1024, "E": 128, "D": 128}}
    assert suites.needed_bytes(cfg) == 4 * 1024 * 1024 * 128 * 4 * 3
    assert suites.needed_bytes({**cfg, "impl": "attnkit_additive"}) == 0


def test_make_row_from_hand_written_measurements():
    cfg = {"suite": "dot", "mode": "fwd", "shape": {"B": 2, "H": 1, "N": 10, "E": 5}}
    ours = {"ms": [3.0, 1.0, 2.0], "peak_mb": 2.0}
    peer = {"ms": [4.0, 6.0, 5.0], "peak_mb": 8.0}
    row = suites.make_row(cfg, ours, "torch_sdpa", peer)
    assert row["shape"] == "B=2 H=1 N=10 E=5"
    assert (row["ms_median"], row["peer_ms_median"], row["speedup"]) == (2.0, 5.0, 2.5)
    assert row["ms_p10"] == pytest.approx(1.2) and row["peer_ms_p90"] == pytest.approx(5.8)
    assert row["memory_ratio"] == 4.0 and row["repeats"] == 3
    # 4 * B * H * N² * E = 4000 FLOPs in 2 ms
    assert row["gflops"] == pytest.approx(4000 / 2e-3 / 1e9)


def test_make_row_reports_errors_without_times():
    cfg = {"suite": "additive", "mode": "fwd+bwd", "shape": {"B": 1, "H": 1, "N": 4, "E": 2, "D": 2}}
    row = suites.make_row(cfg, {"ms": [1.0]}, "naive_eager", {"error": "needs about 9 GiB"})
    assert row["peer_ms_median"] is None and row["speedup"] is None
    assert row["peer_error"] == "needs about 9 GiB"
    assert row["shape"] == "B=1 H=1 N=4 E=2 D=2"


def test_unknown_implementation_is_a_value_error():
    with pytest.raises(ValueError, match="unknown implementation 'flash' for suite 'dot'"):
        suites.build_step({"suite": "dot", "impl": "flash", "mode": "fwd", "shape": {"B": 1, "H": 1, "N": 4, "E": 2}})


def test_quick_paired_rows_in_process():
    out = list(rows(["dot"], ["fwd"], sizes=None, peers=None, paired=True,
                    options=Options(warmup=1, repeats=2, threads=1, memory=False, quick=True)))
    assert [(r["impl"], r["peer"], r["paired"], r["repeats"]) for r in out] == [("attnkit", "torch_sdpa", True, 2)]
    assert out[0]["ms_p10"] <= out[0]["ms_median"] <= out[0]["ms_p90"]


def test_measure_peak_is_not_negative():
    mb, seconds = memory.measure_peak(lambda: bytearray(1 << 20), warm=True, cold_base_kb=memory.max_rss_kb())
    assert mb >= 0.0 and seconds >= 0.0
