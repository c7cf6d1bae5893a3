"""Benchmarks: programs that print JSON and measure their baselines in the same run."""
