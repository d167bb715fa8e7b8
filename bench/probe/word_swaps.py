#!/usr/bin/env python3
"""Must-miss pairs nobody chose, from a list: each question with a negation
added, a number word changed, or a word swapped for its counterpart.

Usage: word_swaps.py QUESTIONS.jsonl > pairs.tsv

The companion of wordnet_swaps.py for what WordNet does not pair: a "not"
after the first auxiliary ("is it safe" -> "is it not safe"), another number
in words ("two" -> "seven"), and up to two words of the list below swapped
for their counterpart: opposites ("buy" / "sell", "enable" / "disable"),
relatives ("husband" / "wife"), currencies and units ("dollars" / "euros",
"miles" / "kilometers"), meals, drinks, accounts and cards ("checking" /
"savings", "credit" / "debit"), devices and media ("alarm" / "timer", "song" /
"album"). Prepositions are left to the hand-written suite: swapping the "to"
of an infinitive makes nonsense, not another question. Every pair is written
in the must-miss format for bench/eval's --must-miss.
"""
import json
import random
import sys

AUX = {"is", "are", "was", "were", "can", "could", "will", "would", "should", "do", "does",
       "did", "has", "have", "am"}
NUMBERS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
           "eleven", "twelve", "twenty", "thirty", "fifty", "hundred"]
PAIRS = """buy sell, open close, start stop, add remove, increase decrease, more less,
earlier later, send receive, lend borrow, allow block, lock unlock, enable disable,
show hide, include exclude, import export, win lose, inside outside, upstairs downstairs,
north south, east west, first last, cheapest dearest, fastest slowest, highest lowest,
maximum minimum, always never, husband wife, son daughter, brother sister, mom dad,
morning evening, weekday weekend, hot cold, sunny rainy, summer winter, dollars euros,
celsius fahrenheit, miles kilometers, pounds kilograms, breakfast dinner, chicken beef,
rice pasta, coffee tea, checking savings, credit debit, visa mastercard,
deposit withdrawal, income expenses, spanish french, python java, monday tuesday,
january february, alarm timer, email text, song album, movie show, flight train,
hotel hostel, car bike, uber lyft, shampoo conditioner, salt sugar, milk cream,
bread cake, red blue, white black, iphone android"""
SWAP = {}
for pair in PAIRS.replace("\n", " ").split(","):
    a, b = pair.split()
    SWAP[a], SWAP[b] = b, a


def main():
    rng = random.Random(3)
    print("cached\tnew\tkind\texpected")
    for line in open(sys.argv[1], encoding="utf-8"):
        text = json.loads(line)["text"].replace("\t", " ")
        words = text.split()
        low = [w.lower().strip("?.,!") for w in words]
        made = []
        negated = any(w in ("not", "no", "never") or w.endswith("n't") for w in low)
        for i, w in enumerate(low):
            # one negation, not two: "i don't have not a clue" asks nothing
            if w in AUX and not negated:
                made.append((" ".join(words[:i + 1] + ["not"] + words[i + 1:]), "negation"))
                break
        for i, w in enumerate(low):
            if w in NUMBERS:
                other = words[:]
                other[i] = rng.choice([n for n in NUMBERS if n != w])
                made.append((" ".join(other), "number_word"))
                break
        spots = [i for i, w in enumerate(low) if w in SWAP]
        rng.shuffle(spots)
        for i in spots[:2]:
            other = words[:]
            other[i] = SWAP[low[i]]
            made.append((" ".join(other), "counterpart"))
        for new, kind in made:
            if new.lower() != text.lower():
                print(f"{text}\t{new}\t{kind}\tmiss")


if __name__ == "__main__":
    main()
