"""Generated quotes for the demo: random walks whose tick volatility matches real EURUSD.

``EURUSD_TICK_VOL`` is the standard deviation of tick-to-tick log mid returns
in the HistData EURUSD file of 2020-01-01 17:00-23:00 EST (9,500 quotes):
1.0557e-05; its median relative spread is 2.67e-05. A test recomputes both
from the file in ``../shared/data`` (and says why it skips where that is absent).
"""

from __future__ import annotations

import numpy as np

EURUSD_TICK_VOL = 1.0557e-05
EURUSD_REL_SPREAD = 2.67e-05


class QuoteWalk:
    """Per-symbol geometric random walks; ``crash`` bends one symbol's path down over a span of ticks."""

    def __init__(self, start_prices: dict[str, float], seed: int = 7, tick_vol: float = EURUSD_TICK_VOL,
                 rel_spread: float = EURUSD_REL_SPREAD) -> None:
        self.symbols = list(start_prices)
        self.mid = np.array([start_prices[s] for s in self.symbols], dtype=np.float64)
        self.rng = np.random.default_rng(seed)
        self.tick_vol = tick_vol
        self.rel_spread = rel_spread
        self.drift: dict[int, list[float]] = {}  # symbol index -> queued extra log moves

    def crash(self, symbol: str, total_move: float, ticks: int) -> None:
        """Queue a move of ``total_move`` (e.g. -0.04) spread over the symbol's next ``ticks`` quotes."""
        step = float(np.log1p(total_move)) / ticks
        self.drift.setdefault(self.symbols.index(symbol), []).extend([step] * ticks)

    def next(self, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``count`` quotes: symbol index, bid, ask (symbols chosen uniformly)."""
        which = self.rng.integers(0, len(self.symbols), size=count)
        shocks = self.rng.normal(0.0, self.tick_vol, size=count)
        bids = np.empty(count)
        asks = np.empty(count)
        for i in range(count):
            s = int(which[i])
            move = shocks[i]
            queue = self.drift.get(s)
            if queue:
                move += queue.pop(0)
            self.mid[s] *= float(np.exp(move))
            half = self.mid[s] * self.rel_spread / 2.0
            bids[i] = round(self.mid[s] - half, 6)
            asks[i] = round(self.mid[s] + half, 6)
        return which, bids, asks
