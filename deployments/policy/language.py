"""Rules over what callers say, on normalised words: the same sentence typed, or written by
Whisper with its capitals and punctuation ("Operator." "No, don't do it."), reads the same.

Everything here is a single pass over a word list (linear time); no pattern backtracks.
"""

from __future__ import annotations

import re
from typing import Literal

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_SUFFIXES = {"n't": " not", "'re": " are", "'ll": " will", "'ve": " have", "'m": " am", "'d": " would"}
_IS = {"it", "that", "what", "where", "who", "how", "there", "here", "he", "she", "this"}
HEAD_CHARS = 200  # enough for any run of fillers before the first real word
SCAN_CHARS = 2000  # a spoken turn is far shorter; a longer typed one is read this far
FILLERS = {
    "um",
    "uh",
    "er",
    "erm",
    "uhm",
    "hmm",
    "mm",
    "ah",
    "oh",
    "so",
    "well",
    "okay",
    "ok",
    "alright",
    "right",
    "and",
    "also",
    "actually",
    "hi",
    "hey",
    "hello",
    "sorry",
    "just",
    "quick",
    "question",
    "wait",
    "anyway",
    "yeah",
    "then",
    "but",
    "now",
    "one",
    "more",
    "thing",
    "before",
    "that",
    "first",
    "by",
    "the",
    "way",
    "listen",
    "look",
    "please",
    "excuse",
    "me",
    "hang",
    "on",
    "hold",
}
QUESTION_WORDS = {
    "how",
    "what",
    "when",
    "where",
    "which",
    "why",
    "who",
    "whom",
    "whose",
    "do",
    "does",
    "did",
    "is",
    "are",
    "can",
    "could",
    "will",
    "would",
    "should",
    "may",
    "am",
    "have",
    "has",
    "was",
    "were",
}
QUESTION_FRAMES = (("i", "was", "wondering"), ("i", "wonder"), ("tell", "me"), ("i", "would", "like", "to", "know"))


def words(text: str) -> list[str]:
    """Lower-case words, contractions spelled out ("don't" -> "do not", "what's" -> "what is")."""
    out: list[str] = []
    for w in _WORD.findall(text.lower().replace("’", "'")):
        if w in ("won't", "can't", "cannot"):
            out += ["will" if w == "won't" else "can", "not"]
        elif w.endswith("'s"):
            out += [w[:-2], "is"] if w[:-2] in _IS else [w[:-2]] if w[:-2] != "let" else ["let", "us"]
        elif "'" in w:
            stem, suffix = w[: w.index("'")], w[w.index("'") :]
            if suffix == "'t" and stem.endswith("n"):
                stem, suffix = stem[:-1], "n't"
            out += [stem] + _SUFFIXES.get(suffix, "").split()
        else:
            out.append(w)
    return [w for w in out if w]


def normalize(text: str) -> str:
    """The words of `text` joined by single spaces: what the pattern rules match against."""
    return " ".join(words(text))


def content(ws: list[str]) -> list[str]:
    """The words after any leading fillers ("So, um, okay, how long..." -> "how long...")."""
    i = 0
    while i < len(ws) and ws[i] in FILLERS:
        i += 1
    return ws[i:]


def is_question(text: str) -> bool:
    """Asked as a question: a question mark, a question word first, or "I was wondering..."."""
    if text.rstrip().endswith("?"):
        return True
    ws = content(words(text[:HEAD_CHARS]))  # how it starts decides
    if not ws:
        return False
    return ws[0] in QUESTION_WORDS or any(tuple(ws[: len(f)]) == f for f in QUESTION_FRAMES)


_ACCOUNT_NOUNS = {
    "order",
    "orders",
    "package",
    "packages",
    "parcel",
    "parcels",
    "delivery",
    "shipment",
    "stuff",
    "purchase",
    "return",
    "refund",
    "item",
    "items",
    "money",
}
_STATUS = {
    "where",
    "status",
    "track",
    "tracking",
    "shipped",
    "dispatched",
    "arrived",
    "arrive",
    "arriving",
    "come",
    "coming",
    "came",
    "delivered",
    "sent",
    "received",
    "processed",
    "update",
    "happened",
    "happening",
    "check",
    "late",
    "lost",
    "missing",
    "yet",
    "still",
}
_ACTION_ASK = (("can", "you"), ("could", "you"), ("would", "you"), ("will", "you"), ("help", "me"), ("please",))
_ACTION_VERBS = {
    "start",
    "open",
    "process",
    "check",
    "track",
    "cancel",
    "return",
    "send",
    "look",
    "find",
    "initiate",
    "begin",
    "arrange",
    "file",
    "do",
}


def asks_about_account(text: str) -> bool:
    """About the caller's own order or return (its status, or an action on it), not about our
    policies: "where is my parcel", "can you start a return"; but "how long does my refund take"
    asks about the rule."""
    ws = content(words(text[:SCAN_CHARS]))
    has_mine = any(w in ("my", "our") and nxt in _ACCOUNT_NOUNS for w, nxt in zip(ws, ws[1:] + [""]))
    if has_mine and any(w in _STATUS for w in ws):
        return True
    for frame in _ACTION_ASK:
        if tuple(ws[: len(frame)]) == frame and any(w in _ACTION_VERBS for w in ws[len(frame) : len(frame) + 4]):
            return True
    return False


_NEGATORS = {"not", "never", "no"}
_REQUEST_VERBS = {"want", "need", "wanna", "speak", "talk", "transfer", "ask", "asked", "put", "connect"}


_CLAUSE_END = re.compile(r"[.!?;,]")


def negated_request(text: str) -> bool:
    """A request said in the negative ("I don't want to speak to a person", "no need for an agent"),
    but not the question form "can't I talk to someone?". Judged clause by clause: a "No." before
    the request ("No. Put me through to a manager.") answers something else."""
    return any(_negated_clause(words(clause)) for clause in _CLAUSE_END.split(text[:SCAN_CHARS]))


def _negated_clause(ws: list[str]) -> bool:
    for i, w in enumerate(ws):
        if w in _NEGATORS and _REQUEST_VERBS & set(ws[i + 1 : i + 3]):
            question = i > 0 and ws[i - 1] in ("can", "could", "why", "would", "will") and ws[i + 1 : i + 2] == ["i"]
            if not question:
                return True
    return False


def announces_pin(text: str) -> bool:
    """The caller says they are giving their PIN ("my PIN is ...", "the PIN's ..."): a PIN given
    before it was asked for."""
    ws = words(text[:SCAN_CHARS])
    return "pin" in ws or "passcode" in ws or ("security" in ws and "code" in ws)


_RETURN_WORDS = {"return", "returning", "refund", "exchange", "swap"}


def mentions_return(text: str) -> bool:
    """Names a return ("return", "refund", "send it back"): with an order number, the return flow."""
    ws = words(text)
    sends_back = any(w in ("send", "sending", "take") and "back" in ws[i + 1 : i + 4] for i, w in enumerate(ws))
    return bool(_RETURN_WORDS & set(ws)) or sends_back


# --- yes or no at a confirmation -------------------------------------------------------
_STRONG_YES = {
    "yes",
    "yeah",
    "yep",
    "yup",
    "yea",
    "ya",
    "sure",
    "correct",
    "absolutely",
    "definitely",
    "certainly",
    "affirmative",
    "proceed",
    "confirm",
    "confirmed",
    "agreed",
    "mhm",
    "uhhuh",
}
_WEAK_YES = {"ok", "okay", "alright", "fine", "right", "please", "good", "great", "perfect", "cool"}
_NO = {"no", "nope", "nah", "not", "never", "cancel", "stop", "negative", "nay", "dont"}
_YES_IDIOMS = [
    ("go", "ahead"),
    ("do", "it"),
    ("please", "do"),
    ("sounds", "good"),
    ("of", "course"),
    ("why", "not"),
    ("no", "problem"),
    ("no", "worries"),
    ("not", "a", "problem"),
    ("i", "agree"),
    ("think", "so"),
    ("go", "for", "it"),
    ("all", "right"),
    ("uh", "huh"),
    ("mm", "hmm"),
    ("that", "would", "be", "great"),
]
_NO_IDIOMS = [
    ("never", "mind"),
    ("rather", "not"),
    ("forget", "it"),
    ("changed", "my", "mind"),
    ("leave", "it"),
    ("keep", "it"),
    ("not", "yet"),
    ("prefer", "not"),
    ("do", "not", "bother"),
]
_UNSURE = [
    ("not", "sure"),
    ("do", "not", "know"),
    ("no", "idea"),
    ("maybe",),
    ("wait",),
    ("hold", "on"),
    ("hang", "on"),
    ("let", "me", "think"),
    ("perhaps",),
]

Answer = Literal["yes", "no"] | None
MAX_ANSWER_WORDS = 40


def _match(ws: list[str], i: int, phrases: list[tuple[str, ...]]) -> int:
    """Length of the phrase among `phrases` that starts at ws[i], 0 for none."""
    for p in phrases:
        if tuple(ws[i : i + len(p)]) == p:
            return len(p)
    return 0


def confirmation(text: str) -> Answer:
    """ "yes", "no", or None when unclear or mixed ("Yes. Actually, no, wait."): ask again.

    A yes-word under a negation is a no ("No, don't do it", "I'm not okay with that", "of course
    not"); politeness after a no stays a no ("No, that's alright")."""
    if len(text) > 10 * MAX_ANSWER_WORDS:  # a speech is not a clear answer to a yes-or-no question
        return None
    ws = words(text)
    if len(ws) > MAX_ANSWER_WORDS:
        return None
    strong = weak = no = unsure = False
    i = other = 0
    while i < len(ws):
        if k := _match(ws, i, _UNSURE):
            unsure, i = True, i + k
            continue
        if k := _match(ws, i, _NO_IDIOMS):
            no, i = True, i + k
            continue
        k = _match(ws, i, _YES_IDIOMS)
        kind = "strong" if k else "strong" if ws[i] in _STRONG_YES else "weak" if ws[i] in _WEAK_YES else None
        k = k or 1
        if kind:
            negated = (i > 0 and ws[i - 1] in _NO) or (i + k < len(ws) and ws[i + k] == "not")
            if negated:
                no = True
            elif kind == "strong":
                strong = True
            else:
                weak = True
        elif ws[i] in _NO:
            no = True
        elif ws[i] not in FILLERS:
            other += 1
        i += k
    if no and strong:
        return None
    if no:  # "Wait, no." is a no: hesitation only makes a yes unclear
        return "no"
    if unsure:
        return None
    if weak and not strong and other > 3:  # "Okay, I want to check my other order": not an answer
        return None
    return "yes" if strong or weak else None
