"""Check the output of the README's main command (scripts/demo.sh) as CI captured it.

Fails (exit 1, naming the line) on a traceback or a warning anywhere after set-up, a missing
prediction of a bundled photo or digit, a wrong prediction of either (the photos are the first
test photo of each class, not picked for being easy: the default cifar_resnet20 scores about 81%
on the JPEG copy, and gets these ten right with the lowest top-1 probability near 0.6, in
float32 and bfloat16 alike), or a missing features file. Stdlib only.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path


def main(log_path: str) -> int:
    lines = Path(log_path).read_text().splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("== ")), None)
    if start is None:
        print("check_main: the main command printed none of its steps (== ...)", file=sys.stderr)
        return 1
    problems = []
    for line in lines[start:]:  # set-up (pip) output comes before the first step
        if "Traceback" in line or re.search(r"warning", line, re.IGNORECASE):
            problems.append(f"unexpected output: {line!r}")
    predicted, photos = {}, {}
    for line in lines[start:]:
        m = re.match(r"\S*digit_(\d)\.png: (\S+) \(class", line)
        if m:
            predicted[m.group(1)] = m.group(2)
        m = re.match(r"\S*samples/cifar10/(\w+)\.jpg: (\S+) \(class", line)
        if m:
            photos[m.group(1)] = m.group(2)
    for digit in "0123456789":
        if predicted.get(digit) != digit:
            problems.append(f"digit_{digit}.png: predicted {predicted.get(digit)!r}, expected {digit!r}")
    classes = "airplane automobile bird cat deer dog frog horse ship truck".split()
    missing = [c for c in classes if c not in photos or photos[c] not in classes]
    if missing:
        problems.append(f"no CIFAR-10 class name predicted for {missing}")
    right = sum(photos.get(c) == c for c in classes)
    if right < 10:
        problems.append(f"only {right}/10 CIFAR-10 photos classified right: {photos}")
    if not any(re.match(r"wrote build/cifar10_features\.safetensors: 10 images x 64 features", line)
               for line in lines[start:]):
        problems.append("no 'wrote build/cifar10_features.safetensors: 10 images x 64 features' line")
    for p in problems:
        print(f"check_main: {p}", file=sys.stderr)
    if not problems:
        print(f"check_main: the main command ran clean: {right}/10 CIFAR-10 photos and "
              f"{len(predicted)}/10 digits right")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
