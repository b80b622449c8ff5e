"""Plot of every registered CFG schedule over the image's AR steps."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from tsbench.engine.cfg import cfg_scale, list_schedules  # noqa: E402


def plot_schedules(out: str | Path, scale: float = 7.5, steps: int = 256,
                   schedules: list[str] | None = None) -> Path:
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    styles = ["-", "--", "-.", ":"]
    for i, name in enumerate(schedules or list_schedules()):
        ax.plot([i / steps for i in range(steps)], [cfg_scale(name, i, steps, scale) for i in range(steps)],
                label=name, linewidth=1.8, linestyle=styles[i % len(styles)])
    ax.set(xlabel="fraction of visual AR steps  t = step / total_steps", ylabel="CFG scale w(t)",
           title=f"CFG schedules (scale {scale})", ylim=(0.5, scale + 0.5))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8, ncol=2)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
