"""The method study's summary: the default's lead over TaylorSeer on the same steps, and the best peer that
spends no more compute than the default."""

from research.method_study import SUMMARY_COLUMNS, block_count, summary_table


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
    assert cells[-1] == "39.00 (diffusers MagCache, threshold 0.5, 6)"


def test_block_count_of_both_families(models):
    assert block_count(models["tiny-flux"].transformer) == 1 + 2  # double-stream + single-stream
    dit = models["tiny-dit"].transformer
    assert block_count(dit) == len(dit.transformer_blocks)
