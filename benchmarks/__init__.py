"""Speed benchmarks: cbloss against each framework's own fused losses, as ratios measured side by side."""
