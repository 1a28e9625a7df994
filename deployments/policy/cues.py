"""Word-set cues that back the embedding classifiers where a caller's wording strays from the
examples: an item named instead of "order" ("where have my trainers got to"), a regional word
("jumper", "post"), a request behind a greeting, a farewell or a "hold on" the examples lack.

Each cue is one pass over the normalised words of the first `SCAN_CHARS` characters (linear
time): word sets and short fixed phrases, no regular expressions.
"""

from __future__ import annotations

from deployments.policy.language import SCAN_CHARS, content, is_question, words
from deployments.policy.slots import NUMBER_WORDS, SOUND_ALIKE

# --- order status and returns --------------------------------------------------------------
_POSSESSIVE = {"my", "our", "me"}  # "me parcel" is how some say "my parcel"
_SHIPMENT = {
    "order",
    "orders",
    "parcel",
    "parcels",
    "package",
    "packages",
    "delivery",
    "deliveries",
    "shipment",
    "courier",
    "post",
    "postman",
    "consignment",
}
_ARRIVAL = {
    "arrived",
    "arrive",
    "arriving",
    "arrives",
    "dispatched",
    "shipped",
    "delivered",
    "tracking",
    "track",
    "lost",
    "missing",
    "late",
    "overdue",
    "delayed",
    "received",
    "came",
    "posted",
    "expected",
}
_ARRIVAL_PHRASES = [
    ("turned", "up"),
    ("turn", "up"),
    ("showed", "up"),
    ("shown", "up"),
    ("show", "up"),
    ("on", "its", "way"),
    ("on", "their", "way"),
    ("got", "to"),
    ("never", "came"),
    ("never", "arrived"),
    ("not", "arrived"),
    ("not", "come"),
    ("not", "received"),
]
_NOT_YET = {"not", "never", "still", "yet"}
_WHERE_VERBS = {"is", "are", "has", "have", "did", "was", "were"}
_RETURN_WORDS = {"return", "returning", "returned", "refund", "refunded", "exchange", "exchanging", "swap"}
_BACK_VERBS = {
    "send",
    "sending",
    "sent",
    "take",
    "taking",
    "bring",
    "bringing",
    "post",
    "posting",
    "posted",
    "give",
    "giving",
    "get",
    "money",
}
_NOT_REQUESTS = {"policy", "policies", "rules"}  # "tell me about your returns policy"
# A question about our rules, not a request: "how long do I have to return", "can I return it if..."
_POLICY_HEADS = {"how", "what", "when", "which", "why", "do", "does", "is", "are", "will", "would"}
_POLICY_WORDS = {
    "if",
    "policy",
    "policies",
    "allowed",
    "possible",
    "usually",
    "normally",
    "long",
    "much",
    "cost",
    "costs",
    "free",
    "within",
    "days",
}


def _phrase_at(ws: list[str], i: int, phrases: list[tuple[str, ...]]) -> bool:
    return any(tuple(ws[i : i + len(p)]) == p for p in phrases)


def _sends_back(ws: list[str]) -> bool:
    return any(w in _BACK_VERBS and "back" in ws[i + 1 : i + 5] for i, w in enumerate(ws))


def policy_question(text: str) -> bool:
    """Asked about how things work ("how long do I have to send it back?", "can I return it if
    I wore it?"), not asking for the caller's own order or return."""
    if not is_question(text):
        return False
    ws = content(words(text[:SCAN_CHARS]))
    if not ws:
        return False
    if ws[0] == "where":
        return False
    if _POLICY_WORDS & set(ws):  # "how long...", "...if I wore them?"
        return True
    return ws[0] in _POLICY_HEADS and not _POSSESSIVE & set(ws)  # but "is my parcel on its way?" is mine


def lexical_intent(text: str) -> str | None:
    """ "returns" or "order_status" when the words clearly ask for one, else None."""
    ws = words(text[:SCAN_CHARS])
    if not ws or _NOT_REQUESTS & set(ws) or policy_question(text):
        return None
    if _RETURN_WORDS & set(ws) or _sends_back(ws):
        return "returns"
    mine = any(w in _POSSESSIVE for w in ws)
    shipment = any(w in _SHIPMENT and nxt != "office" for w, nxt in zip(ws, ws[1:] + [""]))
    for i, w in enumerate(ws):
        if w == "where" and ws[i + 1 : i + 2] and (ws[i + 1] in _WHERE_VERBS or ws[i + 1] in _POSSESSIVE):
            if _POSSESSIVE & set(ws[i + 1 : i + 4]) or shipment:  # "where are my boots", "where's the parcel"
                return "order_status"
        if (mine or shipment) and (_phrase_at(ws, i, _ARRIVAL_PHRASES) or w in _ARRIVAL):
            return "order_status"
        if _phrase_at(ws, i, _ARRIVAL_PHRASES) and _NOT_YET & set(ws[max(0, i - 3) : i + 4]):
            return "order_status"  # "the lamp I bought still hasn't turned up": a non-arrival
    if mine and shipment:  # "my parcel", "our delivery": about the caller's own shipment
        return "order_status"
    return None


# --- small talk the examples miss -----------------------------------------------------------
_FAREWELLS = {
    "bye",
    "goodbye",
    "cheerio",
    "laters",
    "tara",
    "tata",
    "farewell",
    "byebye",
    "ciao",
    "adios",
    "toodles",
    "toodle",
    "goodnight",
    "night",
}
_FAREWELL_PHRASES = [
    ("ta", "ra"),
    ("ta", "ta"),
    ("see", "you"),
    ("see", "ya"),
    ("take", "care"),
    ("catch", "you"),
    ("speak", "soon"),
    ("talk", "soon"),
    ("that", "is", "all"),
    ("that", "is", "everything"),
    ("that", "will", "be", "all"),
    ("nothing", "else"),
    ("all", "done"),
    ("i", "am", "done"),
    ("have", "a", "good", "day"),
    ("have", "a", "nice", "day"),
]
_SMALL = {
    "cheers",
    "thanks",
    "thank",
    "you",
    "ta",
    "lovely",
    "great",
    "ok",
    "okay",
    "right",
    "then",
    "now",
    "for",
    "all",
    "your",
    "help",
    "that",
    "is",
    "it",
    "much",
    "very",
    "bye",
    "so",
    "well",
    "alright",
    "brilliant",
    "perfect",
    "mate",
    "love",
    "and",
    "oh",
    "anyway",
    "good",
    "fab",
    "nice",
    "one",
}
_WAIT_PHRASES = [
    ("hold", "on"),
    ("hang", "on"),
    ("one", "moment"),
    ("one", "sec"),
    ("one", "second"),
    ("a", "moment"),
    ("a", "sec"),
    ("a", "second"),
    ("a", "minute"),
    ("a", "mo"),
    ("bear", "with", "me"),
    ("one", "minute"),
    ("just", "a"),
    ("give", "me", "a"),
]
_WAIT_CUT = {
    "what",
    "where",
    "how",
    "when",
    "why",
    "order",
    "return",
    "refund",
    "pin",
    "parcel",
    "package",
    "agent",
    "person",
    "human",
    "manager",
    "transfer",
    "cancel",
    "no",
    "not",
    "yes",
    "stop",
}
_CONNECTIVITY = [
    ("hear", "me"),
    ("still", "there"),
    ("anybody", "there"),
    ("anyone", "there"),
    ("somebody", "there"),
    ("someone", "there"),
    ("you", "there"),
    ("line", "dead"),
    ("on", "the", "line"),
    ("cut", "out"),
    ("breaking", "up"),
    ("hear", "you"),
]
_CONNECTIVITY_CUT = {
    "order",
    "return",
    "refund",
    "parcel",
    "package",
    "pin",
    "manager",
    "supervisor",
    "agent",
    "human",
    "person",
    "transfer",
    "representative",
    "operator",
    "speak",
    "talk",
}


def farewell(text: str) -> bool:
    """A goodbye, in any region's words ("ta-ra then", "laters", "cheerio"), with
    nothing else asked."""
    if len(text) > 200:
        return False
    ws = words(text.replace("-", ""))
    said = any(w in _FAREWELLS for w in ws) or any(_phrase_at(ws, i, _FAREWELL_PHRASES) for i in range(len(ws)))
    if not said or lexical_intent(text) or any(w.isdigit() for w in ws):
        return False
    rest = [w for w in ws if w not in _FAREWELLS and w not in _SMALL]
    return len(rest) <= 4 and not text.rstrip().endswith("?")


def asks_to_wait(text: str) -> bool:
    """ "Hold on a sec, the dog's barking": the caller asks for a moment, not for anything else."""
    if len(text) > 160:
        return False
    ws = words(text)
    if not any(_phrase_at(ws, i, _WAIT_PHRASES) for i in range(min(len(ws), 4))):
        return False
    return not (_WAIT_CUT & set(ws)) and not any(w.isdigit() for w in ws) and not is_question(text)


def connectivity_check(text: str) -> bool:
    """ "Are you still there?", "can you hear me?": a line check, never a request for a person."""
    if len(text) > 160:
        return False
    ws = words(text)
    found = any(_phrase_at(ws, i, _CONNECTIVITY) for i in range(len(ws)))
    return found and not (_CONNECTIVITY_CUT & set(ws))


# --- answers to the agent's offer of a transfer ---------------------------------------------
_ACCEPT_WORDS = {
    "yes",
    "yeah",
    "yep",
    "yup",
    "yea",
    "ya",
    "sure",
    "ok",
    "okay",
    "alright",
    "right",
    "fine",
    "please",
    "go",
    "ahead",
    "do",
    "it",
    "that",
    "transfer",
    "me",
    "put",
    "through",
    "connect",
    "colleague",
    "a",
    "to",
    "them",
    "thanks",
    "thank",
    "you",
    "would",
    "be",
    "great",
    "good",
    "sounds",
    "of",
    "course",
    "why",
    "not",
    "absolutely",
    "definitely",
    "certainly",
    "mhm",
    "uh",
    "huh",
    "um",
    "er",
    "erm",
    "oh",
    "well",
    "then",
    "for",
    "all",
    "perfect",
    "cool",
    "lovely",
    "ta",
    "cheers",
    "i",
    "think",
    "so",
}


def accepts_offer(text: str) -> bool:
    """Nothing but an acceptance ("Yes, please.", "Okay, go ahead."): a turn with digits or a
    request in it ("Sure, nine eight seven six") is a turn of its own, not a yes."""
    if len(text) > 120 or any(ch.isdigit() for ch in text):
        return False
    ws = words(text)
    return bool(ws) and all(w in _ACCEPT_WORDS for w in ws)


_PIN_COMPANIONS = {
    "yes",
    "yeah",
    "yep",
    "ok",
    "okay",
    "right",
    "sure",
    "so",
    "it",
    "is",
    "its",
    "that",
    "um",
    "uh",
    "er",
    "erm",
    "oh",
    "well",
    "alright",
    "here",
    "go",
    "you",
    "are",
    "the",
    "code",
    "number",
    "digits",
    "please",
    "mine",
    "and",
    "then",
    "was",
}


def volunteered_pin(text: str) -> bool:
    """Digits offered unasked, with little else ("Yeah, forty-three twenty-one"): the caller is
    giving a PIN, whatever the agent asked last. Whether it is four digits is the caller's check."""
    if len(text) > 120:
        return False
    ws = words(text.replace("-", " "))
    said_digits = any(w.isdigit() or (w in NUMBER_WORDS and w not in SOUND_ALIKE) for w in ws)
    return said_digits and all(w.isdigit() or w in NUMBER_WORDS or w in _PIN_COMPANIONS for w in ws)
