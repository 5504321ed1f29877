#!/usr/bin/python3
"""Turn real question/answer data that Debian installs into instruction datasets for ftune.

Sources (nothing invented; every question and answer comes from these files):
  /usr/share/games/bsdgames/quiz/<table>   (package bsdgames: quiz(6) tables, fields split by ':',
                                            alternatives by '|', optional text in {}, [a|b] groups)
  /usr/share/games/fortunes/riddles        (package fortunes-min: entries between '%' lines,
                                            with Q:/A: lines, some with several pairs)
Only the question wording ("What is the capital of X?") is ours, one fixed sentence per table.

Writes into OUT (default fixtures/data):
  quiz_alpaca.json        JSON array   {instruction, input, output}
  quiz_alpaca.jsonl       JSON Lines   the same records
  quiz_sharegpt.jsonl     {conversations: [{from: human|gpt, value}]}, 2-3 questions per chat
  quiz_openai.jsonl       {messages: [{role: system|user|assistant, content}]}, same chats
  quiz_dolly.jsonl        {instruction, context, response, category}
  quiz_flan.jsonl         {inputs, targets}
  quiz_pref.jsonl         {prompt, chosen, rejected}: rejected = the answer of another row of the
                          same table (a real, wrong answer)
  quiz_pref_msgs.jsonl    the same with message lists
  riddles_sharegpt.jsonl  the fortunes riddles (multi-turn where an entry holds several Q/A)
  quiz_small.jsonl        alpaca: capitals of Europe only (the end-to-end SFT set)
  quiz_text.jsonl         completion {text: "Q: question\nA: answer"}
Deterministic: rows in file order, pairing for chats and preferences by a fixed rule.
"""
import json
import os
import re
import sys

QUIZ = "/usr/share/games/bsdgames/quiz"
RIDDLES = "/usr/share/games/fortunes/riddles"

# table -> (question template on field 0, index of the answer field)
TABLES = {
    "europe": ("What is the capital of {}?", 1),
    "africa": ("What is the capital of {}?", 1),
    "asia": ("What is the capital of {}?", 1),
    "america": ("What is the capital of {}?", 1),
    "state": ("What is the capital of the US state of {}?", 1),
    "province": ("What is the capital of the Canadian province of {}?", 1),
    "elements": ("Which chemical element has the symbol {}?", 3),
    "latin": ("What does the Latin word '{}' mean?", 1),
    "greek": ("What does the Greek word '{}' mean?", 1),
    "babies": ("What is the adult of a {} called?", 1),
    "sexes": ("What is the female of a {} called?", 1),
    "collectives": ("What is a group of {} called?", 1),
}


def first_alternative(s):
    """Expand quiz(6) syntax to its first reading: a|b -> a, [a|b] -> a, {x} -> x."""
    out, depth, i = [], 0, 0
    # top-level '|' ends the first alternative
    level = 0
    for j, c in enumerate(s):
        if c in "[{":
            level += 1
        elif c in "]}":
            level -= 1
        elif c == "|" and level == 0:
            s = s[:j]
            break
    while i < len(s):
        c = s[i]
        if c in "[{":
            # take the group's first alternative, recursively
            level, j = 1, i + 1
            while j < len(s) and level:
                if s[j] in "[{":
                    level += 1
                elif s[j] in "]}":
                    level -= 1
                j += 1
            out.append(first_alternative(s[i + 1:j - 1]))
            i = j
            continue
        if c == "\\" and i + 1 < len(s):
            out.append(s[i + 1])
            i += 2
            continue
        out.append(c)
        i += 1
    del depth
    return "".join(out).strip()


def read_table(name):
    q, ai = TABLES[name]
    rows = []
    with open(os.path.join(QUIZ, name), encoding="latin-1") as f:
        for line in f:
            line = line.rstrip("\n")
            # continuation lines end with '\'; skip tables' multi-line entries
            if not line or line.endswith("\\"):
                continue
            fields = line.split(":")
            if len(fields) <= ai:
                continue
            key, ans = first_alternative(fields[0]), first_alternative(fields[ai])
            if not key or not ans or ans.lower() == "gok":  # "gok" = God only knows
                continue
            rows.append({"table": name, "question": q.format(key), "answer": ans})
    return rows


def read_riddles():
    """Entries with Q:/A: lines -> list of [(question, answer), ...]."""
    text = open(RIDDLES, encoding="utf-8", errors="replace").read()
    convs = []
    for entry in text.split("\n%\n"):
        pairs, q, a, cur = [], None, None, None
        for line in entry.split("\n"):
            m = re.match(r"^\s*([QA]):\s*(.*)$", line)
            if m:
                cur = m.group(1)
                if cur == "Q":
                    if q is not None and a is not None:
                        pairs.append((q, a))
                        q, a = None, None
                    q = m.group(2).strip()
                else:
                    a = m.group(2).strip()
            elif cur and line.strip():
                if cur == "Q" and q is not None:
                    q += " " + line.strip()
                elif cur == "A" and a is not None:
                    a += " " + line.strip()
        if q and a:
            pairs.append((q, a))
        if pairs:
            convs.append(pairs)
    return convs


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "fixtures/data"
    os.makedirs(out, exist_ok=True)
    for p in (QUIZ, RIDDLES):
        if not os.path.exists(p):
            sys.exit(f"make-quiz-data: {p} is missing (apt-get install bsdgames fortunes-min)")
    rows = []
    for t in TABLES:
        rows += read_table(t)
    if len(rows) < 100:
        sys.exit(f"make-quiz-data: only {len(rows)} quiz rows read, the tables look wrong")

    def dump(name, recs, array=False):
        path = os.path.join(out, name)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            if array:
                json.dump(recs, f, ensure_ascii=False, indent=1)
                f.write("\n")
            else:
                for r in recs:
                    f.write(json.dumps(r, ensure_ascii=False) + "\n")
        os.replace(tmp, path)

    alpaca = [{"instruction": r["question"], "input": "", "output": r["answer"]} for r in rows]
    dump("quiz_alpaca.json", alpaca, array=True)
    dump("quiz_alpaca.jsonl", alpaca)
    dump("quiz_small.jsonl", [{"instruction": r["question"], "input": "", "output": r["answer"]}
                              for r in rows if r["table"] == "europe"])
    dump("quiz_dolly.jsonl", [{"instruction": r["question"], "context": "", "response": r["answer"],
                               "category": "open_qa"} for r in rows])
    dump("quiz_text.jsonl", [{"text": "Q: %s\nA: %s" % (r["question"], r["answer"])} for r in rows])
    dump("quiz_flan.jsonl", [{"inputs": r["question"], "targets": r["answer"]} for r in rows])

    # chats: consecutive rows of one table, 2 or 3 per conversation
    sg, oa, i, k = [], [], 0, 0
    while i < len(rows):
        n = 2 + (k % 2)
        grp = [r for r in rows[i:i + n] if r["table"] == rows[i]["table"]]
        i += len(grp)
        k += 1
        conv = []
        for r in grp:
            conv += [("user", r["question"]), ("assistant", r["answer"])]
        sg.append({"conversations": [{"from": "human" if ro == "user" else "gpt", "value": c}
                                     for ro, c in conv]})
        msgs = [{"role": ro, "content": c} for ro, c in conv]
        if k % 3 == 0:
            msgs = [{"role": "system", "content": "Answer the quiz question."}] + msgs
        oa.append({"messages": msgs})
    dump("quiz_sharegpt.jsonl", sg)
    dump("quiz_openai.jsonl", oa)

    # preferences: rejected = the answer of the next row of the same table with another answer
    pref, pref_m = [], []
    for j, r in enumerate(rows):
        same = [x for x in rows[j + 1:] + rows[:j] if x["table"] == r["table"]
                and x["answer"] != r["answer"]]
        if not same:
            continue
        wrong = same[0]["answer"]
        pref.append({"prompt": r["question"], "chosen": r["answer"], "rejected": wrong})
        pref_m.append({"prompt": [{"role": "user", "content": r["question"]}],
                       "chosen": [{"role": "assistant", "content": r["answer"]}],
                       "rejected": [{"role": "assistant", "content": wrong}]})
    dump("quiz_pref.jsonl", pref)
    dump("quiz_pref_msgs.jsonl", pref_m)

    rid = read_riddles()
    if len(rid) < 10:
        sys.exit(f"make-quiz-data: only {len(rid)} riddles read from {RIDDLES}")
    dump("riddles_sharegpt.jsonl",
         [{"conversations": [m for q, a in pairs for m in
                             ({"from": "human", "value": q}, {"from": "gpt", "value": a})]}
          for pairs in rid])
    print(f"make-quiz-data: {len(rows)} quiz rows, {len(sg)} chats, {len(pref)} preference pairs, "
          f"{len(rid)} riddles -> {out}")


if __name__ == "__main__":
    main()
