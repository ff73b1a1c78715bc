"""Writes the unit table of the whole-process `psmeval match` benchmark (issue 16).

300,000 units, 60,000 of them treated, and two covariates that predict treatment, so ratio-3 matching
without replacement depletes the controls where the treated are dense. Python's standard library only,
with a fixed seed, so the file is the same on every machine.

Usage: python3 benches/matching/units_300k.py [OUT.csv]   (default out/match300k.csv)
"""
import os
import random
import sys

out = sys.argv[1] if len(sys.argv) > 1 else "out/match300k.csv"
os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
rng = random.Random(16)
n, treated = 300_000, 60_000
treat = [1] * treated + [0] * (n - treated)
rng.shuffle(treat)
with open(out, "w") as f:
    f.write("id,treat,x1,x2\n")
    for i, t in enumerate(treat):
        x1 = rng.gauss(0.8 * t, 1.0)
        x2 = rng.gauss(0.5 * t, 1.0)
        f.write(f"u{i + 1:06d},{t},{x1:.15g},{x2:.15g}\n")
