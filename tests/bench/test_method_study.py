"""The method study's summary: the default's lead over TaylorSeer on the same steps, and the best peer that
spends no more compute than the default."""

from research.method_study import SUMMARY_COLUMNS, block_count, pareto_front, summary_table


def row(method, psnr, compute=7.0, full=7):
    return {"steps": 20, "budget": 0.35, "method": method, "psnr_db": psnr, "compute": compute, "full_steps": full}


def test_summary_row_reads_lead_and_best_affordable_peer():
    rows = [row(name, 40.0 + i) for i, name in enumerate(n for n in SUMMARY_COLUMNS if n is not None)]
    rows += [row("diffusers MagCache, threshold 0.5", 39.0, compute=6.0),
             row("cache-dit cache-dit-dbcache-taylorseer-static (TC-Padé's full steps)", 45.0, compute=8.2),
             row("diffusers FirstBlockCache, threshold 0.15", 35.0, compute=7.0)]
    (line,) = summary_table({"rows": rows})[2:]
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[0] == "20 / 0.35 (7)" and cells[1] == "40.00" and cells[2] == "41.00"
    assert cells[3] == "**-1.00**"  # default minus TaylorSeer order 1 on the same steps
    # the cache-dit peer is better but spends more compute than the default: not comparable
    assert cells[-2] == "39.00 (diffusers MagCache, threshold 0.5, 6)" and cells[-1] == "**+1.00**"


def test_block_count_of_both_families(models):
    assert block_count(models["tiny-flux"].transformer) == 1 + 2  # double-stream + single-stream
    dit = models["tiny-dit"].transformer
    assert block_count(dit) == len(dit.transformer_blocks)


def test_peers_swept_once_per_step_count_count_for_every_budget_and_the_margin_is_written():
    """Peer rows without a budget are the step count's sweep: each budget's cell takes the best of them at no
    more compute than its own TC-Padé run, and writes TC-Padé's lead over it."""
    rows = [row(name, 40.0) for name in SUMMARY_COLUMNS if name is not None]
    taylorseer = "diffusers TaylorSeer hook (attention+ff, interval 3, warm-up 1, order 1)"
    rows += [dict(row(taylorseer, 42.5, 6.9), budget=None),
             dict(row("diffusers MagCache (threshold 0.06, max skip 2)", 45.0, 14.0), budget=None)]
    (line,) = summary_table({"rows": rows})[2:]
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[-2] == "42.50 (diffusers TaylorSeer hook (attention+ff, interval 3, warm-up 1, order 1), 6.9)"
    assert cells[-1] == "**-2.50**"


def test_pareto_front_keeps_what_no_cheaper_configuration_beats():
    runs = [{"compute": c, "psnr_db": p} for c, p in ((7, 20.0), (8, 19.0), (9, 25.0), (9, 24.0), (12, 26.0))]
    assert [(r["compute"], r["psnr_db"]) for r in pareto_front(runs)] == [(7, 20.0), (9, 25.0), (12, 26.0)]
