#!/usr/bin/env python3
"""Does a fashion-vqa model count what it sees? Asks, for every test scene, what is in each cell
and how many there are of every kind, then compares each count with the count implied by the
model's own answers for the cells. A count that disagrees with the cells the model names rightly
is a counting error, not a seeing error.

  python3 scripts/fashion_count_check.py questions runs/fashion/data runs/fashion/counts_q.json
  ocellus eval -m MODEL.gguf --mmproj MMPROJ.gguf --questions runs/fashion/counts_q.json \\
      --images runs/fashion/data --max-tokens 8 -o runs/fashion/counts.json
  python3 scripts/fashion_count_check.py report runs/fashion/counts.json
"""
import collections
import json
import re
import sys

NAMES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"]
ALIKE = [{"t-shirt", "pullover", "coat", "shirt"}, {"trouser", "dress"}, {"sandal", "sneaker", "ankle boot"}, {"bag"}]
CELLS = ["top left", "top right", "bottom left", "bottom right"]


def plural(n):
    return n + ("es" if n.endswith("s") else "s")


def questions(data_dir, out):
    caps = json.load(open(data_dir + "/test_captions.json"))
    qs = []
    for r in caps:
        cap = r["conversations"][1]["value"]
        cell = ["nothing"] * 4
        for m in re.finditer(r"an? (.+?) in the (top left|top right|bottom left|bottom right)", cap):
            cell[CELLS.index(m.group(2))] = m.group(1)
        for c in range(4):
            qs.append(dict(question_id=f"{r['id']}/cell{c}", image=r["image"], category="identity",
                           question=f"What is in the {CELLS[c]} cell? Answer briefly.", answer=cell[c]))
        for n in NAMES:
            qs.append(dict(question_id=f"{r['id']}/count/{n}", image=r["image"], category="counting",
                           question=f"How many {plural(n)} are there? Answer briefly.", answer=str(cell.count(n))))
    json.dump(qs, open(out, "w"), indent=0)
    print(f"wrote {out}: {len(qs)} questions about {len(caps)} scenes")


def report(path):
    scenes = collections.defaultdict(dict)
    for a in json.load(open(path))["answers"]:
        scene, q = a["question_id"].split("/", 1)
        scenes[scene][q] = (a["prediction"].strip().lower(), a["answer"])
    n = agree = right = implied_right = 0
    counts_when_cells_right = [0, 0]
    absent = collections.Counter()
    absent_wrong = collections.Counter()
    for q in scenes.values():
        said = [q[f"cell{c}"][0] for c in range(4)]
        truth = [q[f"cell{c}"][1] for c in range(4)]
        for kind in NAMES:
            pred, ans = q["count/" + kind]
            implied = str(said.count(kind))
            n += 1
            agree += pred == implied
            right += pred == ans
            implied_right += implied == ans
            if all((s == kind) == (t == kind) for s, t in zip(said, truth)):
                counts_when_cells_right[0] += pred == ans
                counts_when_cells_right[1] += 1
            if ans == "0":
                group = next(g for g in ALIKE if kind in g)
                key = "a look-alike present" if any(t in group for t in truth) else "no look-alike present"
                absent[key] += 1
                absent_wrong[key] += pred != "0"
    print(f"{len(scenes)} scenes, {n} counts (every kind in every scene)")
    print(f"counts right:                                  {right / n:.1%}")
    print(f"counts implied by the model's cell answers right: {implied_right / n:.1%}")
    print(f"counts equal to those implied:                  {agree / n:.1%}")
    print(f"counts right where the model names every cell rightly for that kind: "
          f"{counts_when_cells_right[0] / max(1, counts_when_cells_right[1]):.1%} of {counts_when_cells_right[1]}")
    for key in sorted(absent):
        print(f"absent kind, {key}: a count above 0 in {absent_wrong[key] / absent[key]:.1%} of {absent[key]}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "questions":
        questions(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 3 and sys.argv[1] == "report":
        report(sys.argv[2])
    else:
        sys.exit(__doc__)
