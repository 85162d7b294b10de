"""perf.json as a Markdown table."""

from __future__ import annotations

from typing import Any

from relora.tables import markdown_head, markdown_row


def format_table(record: dict[str, Any]) -> str:
    lines = markdown_head("stage", "ours", "plain", "ratio", "detail", "target")
    for r in record["rows"]:
        if r["stage"] == "training step":
            ours, plain, ratio = f"{r['ours_steps_per_s']:.3f} steps/s", f"{r['plain_steps_per_s']:.3f} steps/s", r["speedup"]
            detail = f"batch {r['batch_size']}"
        elif r["stage"] == "search overhead":
            ours, plain, ratio = f"{r['gp_and_acq_s']:.3f} s", f"{r['probe_s']:.2f} s (probe)", r["share_of_probe"]
            detail = (f"median GP fit + EI per BO iteration; {100 * r['share_of_screened_probe']:.1f}% of a "
                      f"screened probe ({r['screened_probe_s']:.2f} s)")
        elif r["stage"] == "cheaper search":
            f, d = r["full"], r["default"]
            ours, plain, ratio = f"{d['examples_scored'][0]:.0f} examples", f"{f['examples_scored'][0]:.0f} examples", \
                r["examples_ratio"]
            detail = "; ".join(f"{k} {_ms(d[k])} vs {_ms(f[k])}" for k in
                               ("alpha", "beta", "steps_to_ready", "init_val_accuracy", "search_s"))
            detail += f" (default vs full, seeds {r['seeds']})"
        elif r["stage"] == "readapt peak RSS":
            ours, plain, ratio = f"{r['peak_rss_mb']:.0f} MB", f"{r['fp32_weights_mb']:.0f} MB (fp32 weights)", r["ratio"]
            detail = (f"VmHWM of `relora readapt` (search + {r['training_steps']} steps); a process that loads one "
                      f"base and runs a forward peaks at {r['one_base_process_mb']:.0f} MB "
                      f"({r['ratio_to_one_base_process']:.2f}x)")
        elif r["stage"] == "end to end":
            ours, plain, ratio, detail = "-", "-", r["search_share_of_total"], f"search share, {r['cells']} cells"
        else:
            ours, plain, ratio = f"{r['ours_s']:.2f} s", f"{r['plain_s']:.2f} s", r["speedup"]
            detail = (f"loss diff {r['abs_loss_diff']:.1e}, same acc {r['same_accuracy']}; physical limit "
                      f"{r['limit_s']:.1f} s ({r['tokens']} tokens at {r['gemm_gflops']:.0f} GFLOP/s), so at most "
                      f"{r['limit_speedup']:.2f}x" if "abs_loss_diff" in r else
                      f"err {r['mean_rel_frobenius_error_ours']:.4f} vs exact {r['mean_rel_frobenius_error_exact']:.4f}; "
                      f"peak RSS {r['ours_peak_rss_mb']:.0f} MB (baseline {r['ours_baseline_rss_mb']:.0f}) vs "
                      f"{r['plain_peak_rss_mb']:.0f} MB")
        lines.append(markdown_row(r["stage"], ours, plain, f"{ratio:.3g}", detail, r["target"]))
    return "\n".join(lines)


def _ms(pair: list[float | None] | tuple[float | None, float | None]) -> str:
    mean, std = pair
    return "n/a" if mean is None else f"{mean:.3g}±{std:.2g}"
