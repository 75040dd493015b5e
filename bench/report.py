"""Statistics, the target checks, the printed table and the chart of a benchmark run."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), q in 0..100."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary_ms(seconds: Sequence[float]) -> dict[str, Any]:
    """n, p50, p95, mean, min, max in milliseconds, plus the raw samples (ms, rounded)."""
    ms = [s * 1000 for s in seconds]
    if not ms:
        return {"n": 0}
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 2),
        "p95_ms": round(percentile(ms, 95), 2),
        "mean_ms": round(sum(ms) / len(ms), 2),
        "min_ms": round(min(ms), 2),
        "max_ms": round(max(ms), 2),
        "samples_ms": [round(x, 2) for x in ms],
    }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if not numerator or not denominator:
        return None
    return round(numerator / denominator, 3)


def _p50(section: dict[str, Any] | None) -> float | None:
    return None if not section else section.get("p50_ms")


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each with the measured value and whether it is met."""
    out: list[dict[str, Any]] = []

    def add(name: str, target: str, value: Any, met: bool | None, note: str = "") -> None:
        out.append({"name": name, "target": target, "value": value, "met": met, "note": note})

    a = results["a_post_latency"]
    add("a: POST generate p50", "< 30 ms", a.get("p50_ms"), _lt(a.get("p50_ms"), 30))
    b_over_c = results["c_floor"].get("b_over_c")
    add("b / c (p50)", "<= 2.5", b_over_c, _le(b_over_c, 2.5))
    b_over_d = results["d_naive"].get("b_over_d")
    add("b / d (p50, d = naive probe)", "<= 0.5", b_over_d, _le(b_over_d, 0.5))
    e = results["e_concurrency"]
    if e.get("skipped"):
        add("e: wall(1 s) - wall(0 s)", "<= 1.5 s", None, None, e["skipped"])
    else:
        overlap = e.get("wall_1s_minus_wall_0s")
        add("e: wall(1 s) - wall(0 s)", "<= 1.5 s", overlap, _le(overlap, 1.5))
        add("e: generations refused (HTTP error)", "0", e.get("refused"), e.get("refused") == 0)
        add("e: jobs lost (accepted, never applied)", "0", e.get("lost"), e.get("lost") == 0)
        add("e: jobs duplicated", "0", e.get("duplicated"), e.get("duplicated") == 0)
    g = results["g_local_model"]
    if g.get("skipped") or g.get("error"):
        add("g: stack tokens/s / direct", ">= 0.9", None, None, g.get("skipped") or g["error"])
    else:
        add("g: stack tokens/s / direct", ">= 0.9", g.get("ratio"), _ge(g.get("ratio"), 0.9))
        fresh = g.get("new_story_each_pair") or {}
        if fresh.get("runs"):
            add(
                "g, a story new to the model in each pair",
                ">= 0.9",
                fresh.get("ratio"),
                _ge(fresh.get("ratio"), 0.9),
            )
    return out


def _lt(value: float | None, limit: float) -> bool | None:
    return None if value is None else value < limit


def _le(value: float | None, limit: float) -> bool | None:
    return None if value is None else value <= limit


def _ge(value: float | None, limit: float) -> bool | None:
    return None if value is None else value >= limit


# ------------------------------------------------------------------------------------- table


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        text = f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    else:
        text = str(value)
    return f"{text}{unit}"


def table(results: dict[str, Any]) -> str:
    """A Markdown table of the headline numbers (printed, and pasted into docs/performance.md)."""
    rows: list[tuple[str, str, str, str]] = []

    def lat(label: str, section: dict[str, Any] | None, note: str = "") -> None:
        if not section or not section.get("n"):
            rows.append((label, "-", "-", note or "not measured"))
            return
        rows.append((label, _fmt(section["p50_ms"], " ms"), _fmt(section["p95_ms"], " ms"), note))

    a = results["a_post_latency"]
    lat("a. POST generate (serial, 0 s model)", a)
    lat("a. POST generate (serial, 1 s model)", a.get("with_1s_model"))
    lat("a. POST generate (burst, 1 s model)", a.get("under_burst_1s"))
    b = results["b_end_to_end"]
    lat("b. click -> page updated (0 s model)", b, "workflow result observed")
    if b.get("first_click_after_start_ms") is not None:
        first = _fmt(b["first_click_after_start_ms"], " ms")
        rows.append(("b. the first click after the site and worker start", first, "-", "one click"))
    lat("b. click -> page row committed", b.get("db_stamp"), "AiJob.completed_at stamp")
    c = results["c_floor"]
    lat("c. floor: no-activity workflow", c, f"b/c = {_fmt(c.get('b_over_c'))}")
    d = results["d_naive"]
    lat("d. naive probe: 3 ordinary activities", d, f"b/d = {_fmt(d.get('b_over_d'))}")
    lat(
        "d'. product with ordinary activities",
        d.get("product_ordinary_activities"),
        f"b/d' = {_fmt(d.get('b_over_product_ordinary'))}",
    )
    probes = results.get("probes", {})
    lat("probe: product shape, empty steps", probes.get("product_shape"), "LA, activity, LA")
    lat("probe: 3 local activities", probes.get("three_local"), "call_llm local too")
    lat("probe: eager start + 3 local", probes.get("eager_three_local"))
    lat("probe: eager start, no activity", probes.get("eager_no_activity"))
    lines = [
        "| measurement | p50 | p95 | note |",
        "| --- | ---: | ---: | --- |",
        *(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} |" for r in rows),
    ]
    phases = b.get("phases_ms") or {}
    naive_phases = (d.get("product_ordinary_activities") or {}).get("phases_ms") or {}
    if phases:
        lines += [
            "",
            "Where a click's time goes (median ms per phase, from the workflow histories):",
            "",
            "| phase | product (local steps) | product (ordinary activities) |",
            "| --- | ---: | ---: |",
        ]
        for key in list(dict.fromkeys([*phases, *naive_phases])):
            lines.append(f"| {key} | {_fmt(phases.get(key))} | {_fmt(naive_phases.get(key))} |")
    e = results["e_concurrency"]
    if not e.get("skipped"):
        lines += [
            "",
            "| burst | sent | refused | applied | lost | duplicated | retries | extra model calls "
            "| wall | throughput | POST p50 |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        names = {
            "latency_0s": "model 0 s",
            "latency_1s": "model 1 s",
            "latency_0s_two_workers": "model 0 s, 2 workers",
        }
        for key in [k for k in names if k in e]:
            run = e[key]
            rate = run["throughput_per_s"]
            lines.append(
                f"| {names[key]} | {run['jobs']} | {run['refused']} | "
                f"{run['applied']} | {run['lost']} | {run['duplicated']} | {run['retries']} | "
                f"{run['extra_model_calls']} | "
                f"{_fmt(run['wall_s'], ' s')} | {'-' if rate is None else f'{rate:.1f}/s'} | "
                f"{_fmt(run['post_latency'].get('p50_ms'), ' ms')} |"
            )
        overlap = _fmt(e["wall_1s_minus_wall_0s"], " s")
        lines.append(f"| wall(1 s) - wall(0 s) | | | | | | | | {overlap} | | |")
    tuned = results.get("server_tuned") or {}
    if tuned and not tuned.get("skipped"):
        lines += [
            "",
            f"Same moment, two dev servers (tuned: {tuned['dynamic_config']}):",
            "",
            "| p50 | default server | tuned server |",
            "| --- | ---: | ---: |",
        ]
        for key, label in (("b", "b. click -> page"), ("c", "c. floor"), ("d", "d. naive probe")):
            lines.append(
                f"| {label} | {_fmt(tuned[f'default_{key}'].get('p50_ms'), ' ms')} | "
                f"{_fmt(tuned[f'tuned_{key}'].get('p50_ms'), ' ms')} |"
            )
        for key, label in (("b_over_c", "b / c"), ("b_over_d", "b / d")):
            lines.append(
                f"| {label} | {_fmt(tuned.get(f'default_{key}'))} | "
                f"{_fmt(tuned.get(f'tuned_{key}'))} |"
            )
        b2b = tuned.get("back_to_back") or {}
        for key, label in (
            ("c", "c, back-to-back"),
            ("d", "d, back-to-back"),
            ("product_shape", "product shape, back-to-back"),
        ):
            if f"default_{key}" in b2b:
                lines.append(
                    f"| {label} | {_fmt(b2b[f'default_{key}'].get('p50_ms'), ' ms')} | "
                    f"{_fmt(b2b[f'tuned_{key}'].get('p50_ms'), ' ms')} |"
                )
    variants = results.get("worker_variants") or {}
    if variants and not variants.get("skipped"):
        lines += [
            "",
            "Worker configuration experiments (request_page_text -> result, round-robin):",
            "",
            "| worker | p50 | p95 | p50 saving |",
            "| --- | ---: | ---: | ---: |",
        ]
        for name, v in variants.items():
            lines.append(
                f"| {name} | {_fmt(v.get('p50_ms'), ' ms')} | {_fmt(v.get('p95_ms'), ' ms')} | "
                f"{_fmt(v.get('p50_saving_ms'), ' ms')} |"
            )
    adapter = results.get("adapter_cost") or {}
    if adapter.get("short_reply"):
        lines += [
            "",
            "CPU per model call (bench process, fake model):",
            "",
            "| reply | LiteLLM stream | LiteLLM no stream | plain httpx stream |",
            "| --- | ---: | ---: | ---: |",
        ]
        for key in ("short_reply", "long_reply"):
            row = adapter[key]
            lines.append(
                f"| {row['words']} words | {_fmt(row['adapter_stream']['cpu_p50_ms'], ' ms')} | "
                f"{_fmt(row['adapter_no_stream']['cpu_p50_ms'], ' ms')} | "
                f"{_fmt(row['httpx_stream']['cpu_p50_ms'], ' ms')} |"
            )
    queries = results.get("queries_per_job") or {}
    if queries.get("story_of_4_pages"):
        small, large = queries["story_of_4_pages"], queries["story_of_40_pages"]
        lines += [
            "",
            "| queries per job | story of 4 pages | story of 40 pages |",
            "| --- | ---: | ---: |",
        ]
        for step in small:
            lines.append(f"| {step} | {small[step]} | {large[step]} |")
    f = results["f_memory"]
    lines += [
        "",
        "| process | RSS idle | RSS peak (burst) | open files idle | open files after bursts |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name in ("site", "worker"):
        proc = f.get(name, {})
        lines.append(
            f"| {name} | {_fmt(proc.get('idle_mb'), ' MB')} | {_fmt(proc.get('peak_mb'), ' MB')} "
            f"| {_fmt(proc.get('open_files_idle'))} | {_fmt(proc.get('open_files_after_bursts'))} |"
        )
    g = results["g_local_model"]
    lines.append("")
    if g.get("skipped") or g.get("error"):
        lines.append(f"g. local model: not measured ({g.get('skipped') or g['error']})")
    else:
        lines.append(
            f"g. local model ({g['runs']} runs each): stack {_fmt(g['stack_tokens_per_s'])} tok/s, "
            f"direct {_fmt(g['direct_tokens_per_s'])} tok/s, ratio {_fmt(g['ratio'])}; mean "
            f"seconds per page: stack {_fmt(g['stack_seconds_mean'])} (of which model call and "
            f"attach {_fmt(g['stack_call_and_attach_seconds_mean'])}), direct "
            f"{_fmt(g['direct_seconds_mean'])}; "
            f"seed {g.get('seed')}: the same page on both sides in "
            f"{g.get('same_text_pairs', '?')} of {g['runs']} pairs"
        )
        if g.get("server_http_stream_tokens_per_s") is not None:
            lines.append(
                f"   model server over HTTP, no LiteLLM: streamed "
                f"{_fmt(g['server_http_stream_tokens_per_s'])} tok/s "
                f"({_fmt(g['server_http_stream_seconds_mean'])} s/page), not streamed "
                f"{_fmt(g['server_http_no_stream_tokens_per_s'])} tok/s "
                f"({_fmt(g['server_http_no_stream_seconds_mean'])} s/page)"
            )
        if g.get("client_per_call_seconds_mean") is not None:
            lines.append(
                f"   the same stack with a new LiteLLM client every call (no kept client): "
                f"{_fmt(g['client_per_call_seconds_mean'])} s/page"
            )
        fresh = g.get("new_story_each_pair") or {}
        if fresh.get("runs"):
            lines.append(
                f"   a story new to the model in each pair ({fresh['runs']} pairs, the prompt "
                f"processed on both sides): stack {_fmt(fresh['stack_tokens_per_s'])} tok/s, "
                f"direct {_fmt(fresh['direct_tokens_per_s'])} tok/s, ratio "
                f"{_fmt(fresh['ratio'])}; {_fmt(fresh['stack_seconds_mean'])} against "
                f"{_fmt(fresh['direct_seconds_mean'])} s a page; the same page in "
                f"{fresh['same_text_pairs']} of {fresh['runs']} pairs"
            )
        if g.get("stack_phases_ms"):
            spent = ", ".join(f"{k} {_fmt(v)}" for k, v in g["stack_phases_ms"].items())
            lines.append(f"   stack, median ms per phase: {spent}")
    lines += ["", "| target | goal | measured | met |", "| --- | --- | ---: | --- |"]
    for t in results["targets"]:
        met = {True: "yes", False: "**no**", None: "n/a"}[t["met"]]
        lines.append(f"| {t['name']} | {t['target']} | {_fmt(t['value'])} | {met} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------- chart


def chart(results: dict[str, Any], path: Path) -> None:
    """Latency distribution (serial) and the two bursts (completions over time, throughput)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(16, 5))
    series = [
        ("a. POST generate", results["a_post_latency"]),
        ("b. click -> page (product)", results["b_end_to_end"]),
        ("c. floor (no activity)", results["c_floor"]),
        ("d. naive probe (3 activities)", results["d_naive"]),
        ("d'. product, ordinary activities", results["d_naive"].get("product_ordinary_activities")),
        ("probe: product shape", results.get("probes", {}).get("product_shape")),
    ]
    for label, section in series:
        samples = sorted((section or {}).get("samples_ms") or [])
        if not samples:
            continue
        ys = [(i + 1) / len(samples) for i in range(len(samples))]
        left.step(samples, ys, where="post", label=f"{label} (p50 {percentile(samples, 50):.0f})")
    left.set_xscale("log")
    from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

    left.xaxis.set_major_locator(FixedLocator([20, 50, 100, 200, 500, 1000, 2000]))
    left.xaxis.set_major_formatter(ScalarFormatter())
    left.xaxis.set_minor_formatter(NullFormatter())
    left.set_xlabel("latency, ms (log)")
    left.set_ylabel("fraction of runs")
    left.set_title("Serial latency (CDF), zero-latency model")
    left.legend(fontsize=7, loc="lower right")
    left.grid(True, which="both", alpha=0.3)

    e = results["e_concurrency"]
    labels, rates = [], []
    if not e.get("skipped"):
        for key, colour in (("latency_0s", "tab:blue"), ("latency_1s", "tab:orange")):
            run = e[key]
            done = sorted(run.get("completion_s") or [])
            middle.step(
                done,
                [i + 1 for i in range(len(done))],
                where="post",
                color=colour,
                label=f"{key.replace('latency_', 'model ')}: wall {run['wall_s']:.2f} s",
            )
            answered = run.get("post_answered_s") or []
            middle.step(
                answered,
                [i + 1 for i in range(len(answered))],
                where="post",
                color=colour,
                linestyle=":",
                label=f"{key.replace('latency_', 'model ')}: POSTs answered",
            )
            labels.append(key.replace("latency_", "model "))
            rates.append(run["throughput_per_s"])
    middle.set_xlabel("seconds since the burst was sent")
    middle.set_ylabel("requests answered (dotted) / pages updated (solid)")
    middle.set_title(f"{e.get('jobs', '?')} generations submitted at once")
    middle.legend(fontsize=8, loc="lower right")
    middle.grid(True, alpha=0.3)

    right.bar(labels, rates, color=["tab:blue", "tab:orange"][: len(rates)])
    for i, rate in enumerate(rates):
        right.text(i, rate, f"{rate:.1f}/s", ha="center", va="bottom")
    right.set_ylabel("jobs per second (burst)")
    right.set_title("Burst throughput")
    meta = results["meta"]
    fig.suptitle(f"Story-Sprout benchmark {meta['started_at']} ({meta['db']}, {meta['cpus']} CPUs)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
