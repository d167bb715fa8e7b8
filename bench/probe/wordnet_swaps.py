#!/usr/bin/env python3
"""Must-miss pairs nobody chose: each question of a set with one word swapped.

Usage: wordnet_swaps.py QUESTIONS.jsonl [WORDNET_DIR] > pairs.tsv

For every question (a JSON line with "text"), up to two of its content words
are replaced, one at a time: a noun by a sibling of its first sense (another
hyponym of the same hypernym, whose own first sense that sibling is: "car" ->
"truck", "mother" -> "father", "march" -> "may"), an adjective by an antonym
of its first sense ("all" -> "some", "hungry" -> "full"), a word that is mostly
a verb by a sibling or an antonym of its first verb sense ("buy" -> "sell",
"send" -> "transport"). The pair is written
in the must-miss format (cached, new, kind, "miss") for bench/eval's
--must-miss. A swap can land on a synonym the sibling's head word also is
("status" -> "condition"), so the hits are read before anything is called a
hole: docs/quality.md has the protocol and the last reading.
"""
import json
import random
import re
import sys

STOP = set("""what whats how who where when which the a an is are was were do does
did can could would should will my me you your i to of in on for and or with from
at by it this that there be have has please tell about any some time way
thing""".split())


def load_index(wn, pos):
    """lemma -> synset offsets, most frequent sense first."""
    idx = {}
    for line in open(f"{wn}/index.{pos}", encoding="latin-1"):
        if line.startswith(" "):
            continue
        f = line.split()
        n, ptrs = int(f[2]), int(f[3])
        idx[f[0]] = f[6 + ptrs:6 + ptrs + n]
    return idx


def load_data(wn, pos):
    """offset -> (words, [(pointer symbol, offset, pos)])."""
    data = {}
    for line in open(f"{wn}/data.{pos}", encoding="latin-1"):
        if line.startswith(" "):
            continue
        f = line.split("|")[0].split()
        nw = int(f[3], 16)
        words = [f[4 + 2 * i].lower() for i in range(nw)]
        k = 4 + 2 * nw
        ptrs = [tuple(f[k + 1 + 4 * i:k + 4 + 4 * i]) for i in range(int(f[k]))]
        data[f[0]] = (words, ptrs)
    return data


def main():
    src = sys.argv[1]
    wn = sys.argv[2] if len(sys.argv) > 2 else "/usr/share/wordnet"
    nidx, ndata = load_index(wn, "noun"), load_data(wn, "noun")
    aidx, adata = load_index(wn, "adj"), load_data(wn, "adj")

    def siblings(word):
        if word not in nidx:
            return []
        first = nidx[word][0]
        words, ptrs = ndata[first]
        out = []
        for sym, up, pos in ptrs:
            if sym not in ("@", "@i") or pos != "n":
                continue
            for sym2, down, _ in ndata[up][1]:
                if sym2 not in ("~", "~i") or down == first:
                    continue
                head = ndata[down][0][0]
                if (re.fullmatch(r"[a-z]+", head) and head not in words and head != word
                        and head in nidx and nidx[head][0] == down):
                    out.append(("noun", head))
        return out

    vidx, vdata = load_index(wn, "verb"), load_data(wn, "verb")

    def verb_swaps(word):
        """Siblings and antonyms of a word's first verb sense, when the word
        is mostly a verb ("open" -> "close", "buy" -> "sell")."""
        if word not in vidx or len(vidx[word]) <= len(nidx.get(word, [])):
            return []
        first = vidx[word][0]
        words, ptrs = vdata[first]
        out = []
        for sym, other, pos in ptrs:
            if pos != "v":
                continue
            if sym == "!":
                cands = [other]
            elif sym == "@":
                cands = [d for s2, d, p2 in vdata[other][1] if s2 == "~" and p2 == "v" and d != first]
            else:
                continue
            for c in cands:
                head = vdata[c][0][0]
                if (re.fullmatch(r"[a-z]+", head) and head not in words and head != word
                        and head in vidx and vidx[head][0] == c):
                    out.append(("verb", head))
        return out

    def antonyms(word):
        if word not in aidx:
            return []
        out = []
        for sym, other, pos in adata[aidx[word][0]][1]:
            if sym != "!" or pos not in ("a", "s"):
                continue
            head = adata[other][0][0].split("(")[0]
            if re.fullmatch(r"[a-z]+", head):
                out.append(("adj", head))
        return out

    rng = random.Random(7)
    print("cached\tnew\tkind\texpected")
    for line in open(src, encoding="utf-8"):
        text = json.loads(line)["text"].replace("\t", " ")
        words = [w for w in re.findall(r"[a-z]+", text.lower()) if w not in STOP and len(w) >= 3]
        rng.shuffle(words)
        done = 0
        for w in words:
            swaps = siblings(w) + antonyms(w) + verb_swaps(w)
            if not swaps:
                continue
            kind, new = rng.choice(swaps)
            swapped = re.sub(r"\b%s\b" % w, new, text, count=1, flags=re.I)
            if swapped.lower() == text.lower():
                continue
            print(f"{text}\t{swapped}\twordnet_{kind}\tmiss")
            done += 1
            if done == 2:
                break


if __name__ == "__main__":
    main()
