"""The policy engine: checks that run, in this order, before any dialogue engine sees a turn.

1. content safety: prompt injection is refused here, so it never reaches an LLM, and before
   the authentication gate, so a hostile turn about orders is refused, not taken for a PIN
   request (after too many failures it escalates instead)
2. authentication gate   3. explicit escalation   4. consecutive failures   5. continue

Patterns match normalised words (`language.normalize`: lower case, no punctuation,
contractions spelled out), so Whisper's "Operator." and "Representative, please." read like
typed text. Every pattern is a plain sequence of alternations and optional groups: no nested
or overlapping quantifiers. A pattern is tried only where one of its first words stands, and
matches at most a few words from there, so a whole check is one pass over the words (linear
time, a few milliseconds on 64 KiB). Meaning beyond the patterns comes from
the embedding classifier (`escalation.EscalationClassifier`), whose verdict arrives in the
context.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from deployments.policy.language import FILLERS, negated_request, normalize
from models.state import PolicyDecision

_HUMAN = (
    r"(person|human|human being|agent|representative|rep|operator|someone|somebody|manager|supervisor|boss"
    r"|colleague|staff|staff member|team member)"
)
_DET = r"(?:(?:a|an|the|some|your|one of your|any|to a|to your|to the|through to a|through to your) )?"
_REAL = r"(?:(?:real|live|actual|proper|another) )?"
_WANTED = r"(person|human|human being|representative|operator|manager|supervisor|live agent|real agent)"
ESCALATION_PATTERNS = [
    rf"\b(speak|talk|chat) (to|with) {_DET}{_REAL}{_HUMAN}\b",
    r"\b(transfer|connect|put) me (through|over|to|with)\b",
    r"\b(transfer me|be transferred|get transferred)\b",
    rf"\b(get|give|find) me {_DET}{_REAL}{_HUMAN}\b",
    rf"\b(can|could|may) i (have|get) {_DET}{_REAL}{_HUMAN}\b",
    rf"\bi (want|need|would like|demand) (to speak to |to talk to )?{_DET}{_REAL}{_WANTED}\b",
    rf"\b{_HUMAN} (that|who)? ?i (can|could|may) (speak|talk) (to|with)\b",
    rf"\b(get|put) {_DET}{_REAL}{_HUMAN} on (the )?(line|phone)\b",
    r"\bhuman being\b",
    r"\bescalate\b",
]
# An utterance made of nothing but these words asks for a person: "Operator." "Agent!"
_BARE_HUMAN = {
    "human",
    "person",
    "operator",
    "representative",
    "rep",
    "agent",
    "manager",
    "supervisor",
    "someone",
    "somebody",
}
_BARE_EXTRA = {
    "real",
    "live",
    "actual",
    "a",
    "an",
    "the",
    "your",
    "now",
    "please",
    "can",
    "i",
    "have",
    "get",
    "me",
    "customer",
    "service",
    "being",
    "talk",
    "speak",
    "to",
    "with",
    "just",
    "want",
    "need",
    "give",
}

_RULES = (
    r"(instructions|rules|guidelines|programming|directives|restrictions|guardrails|training|constraints|filters"
    r"|prompt|prompts)"
)
INJECTION_PATTERNS = [
    r"\b(system|developer|hidden|secret|initial|original|internal) (prompt|message|instructions|rules|guidelines"
    r"|programming)\b",
    r"\byour (prompt|programming|directives|initial instructions|system instructions)\b",
    r"\b(reveal|print|repeat|output|leak|dump|recite) (me )?(all )?(of )?(your|the) (instructions|rules|guidelines)\b",
    r"\b(show|tell|give|read) me (all )?(of )?your (instructions|guidelines)\b",
    # "forget your rules", "ignore all previous instructions"; never "ignore the previous order" (a correction)
    r"\b(ignore|disregard|forget|override|bypass) (all |any |of )?(your|the|my|these|those|previous|prior|above"
    rf"|earlier|all)? ?(previous |prior |above |earlier |original |system )?{_RULES}\b",
    r"\b(ignore|disregard|forget) (everything|anything|all) (above|before this|you were told|you have been told"
    r"|you know)\b",
    r"\bnew instructions\b",
    r"\byou are now (a|an|the|my|in|dan|no longer|free|unrestricted|jailbroken|going to be|allowed)\b",
    r"\byou are no longer (a|an|bound|restricted|an assistant|limited)\b",
    r"\bfrom now on (you|act|pretend|respond|answer|behave|be|only|ignore|always|never|your)\b",
    r"\b(pretend|imagine) (that )?(you are|to be|you were|you have)\b",
    r"\bact (as|like) (a|an|the|my|if|though|you|dan|someone|somebody)\b",
    r"\b(role play|roleplay|play the role|stay in character|simulate being)\b",
    r"\b(jailbreak|jailbroken|jail break|dan mode|developer mode|god mode|admin mode|debug mode|sudo mode"
    r"|unrestricted mode|do anything now)\b",
    r"\b(you|dan|it|he|she) (have|has) no (restrictions|rules|filters|limits|guardrails)\b",
    r"\b(answer|respond|reply|talk|speak) without (any )?(restrictions|rules|filters|limits|guardrails|censorship)\b",
    r"\bprompt injection\b",
    r"\b(repeat|print|show|output|display|copy) (me )?(the |all the |all |everything |all of the )?(text |words |lines "
    r"|messages )?(above|before this)\b",
    r"\b(what|which) (exactly |precisely )?(are|were|is|was) (exactly )?your "
    r"(instructions|guidelines|initial instructions|system prompt|prompt"
    r"|programming|directives)\b",
    r"\b(disable|turn off|switch off|remove|deactivate|bypass|lift) "
    r"(your |the |all |any |all of your )?(safety |content )?"
    r"(filters|filter|restrictions|guardrails|safeguards|safety|censorship)\b",
    r"\b(maintenance|admin|debug|developer|god|sudo|unrestricted|test) mode\b",
    r"\bi am your (developer|creator|admin|administrator|programmer|maker|owner)\b",
    r"\bsudo\b",
    # a game or story that frees the agent: "let's play a game where you are an AI with no rules"
    r"\b(game|story|scenario|world|hypothetical) (where|in which|and|that) (you|your|there|the assistant|the ai)\b",
    r"\b(ai|assistant|bot|chatbot|model|dan|version|character|persona|yourself|agent) (with|that has|who has|which has"
    r"|that have) no (rules|guidelines|limits|limitations|restrictions|filters|boundaries|guardrails|morals|ethics)\b",
    # fake system or authority messages: "system override", "the caller is verified"
    r"\b(system|security|admin|administrator|manual|emergency|developer|supervisor) (override|command|notice|alert"
    r"|update|message|instruction|instructions|directive|authorisation|authorization)\b",
    r"\b(override|authorisation|authorization|access) (code|mode|command|protocol|granted|level)\b",
    r"\b(the |this )?(caller|user|customer|account holder) (is|has been|was) (already |now |fully )?(verified"
    r"|authenticated|authorised|authorized|approved|cleared)\b",
    r"\b(skip|bypass|disable|override|ignore|waive|circumvent|turn off|switch off) (the |my |your |this |that |all |any"
    r" )?(pin|verification|security|authentication|identity|id|passcode) ?(check|checks|step|question|questions"
    r"|process|requirement)?\b",
    r"\byou are (now |hereby |fully )?(authorised|authorized|permitted|allowed|cleared|instructed) to\b",
    r"\b(mode|role|persona) (enabled|activated|unlocked|on)\b",
]
# A system or admin header typed into the turn ("SYSTEM: ...", "[admin] ..."): caller text never holds one.
_FAKE_HEADER = re.compile(r"(?:^|[\s\[(<])(?:system|admin|administrator|developer|root|assistant)\s?[:\]>]")


def _first_words(pattern: str) -> set[str]:
    """The words a pattern can start with: its leading literal or the alternatives of its first group."""
    body = pattern.removeprefix(r"\b")
    if not body.startswith("("):
        return {re.match(r"[a-z]+", body).group(0)}
    depth = 0
    for end, ch in enumerate(body):  # noqa: B007 (`end` is read after the loop)
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth == 0:
            break
    return {alt.split(" ")[0] for alt in body[1:end].removeprefix("?:").split("|")}


def _index(patterns: list[str]) -> dict[str, list[re.Pattern]]:
    """First word -> the patterns that may match from there (compiled without their leading \\b)."""
    rules: dict[str, list[re.Pattern]] = {}
    for p in patterns:
        compiled = re.compile(p.removeprefix(r"\b"))
        for word in _first_words(p):
            assert word.isalpha(), (word, p)
            rules.setdefault(word, []).append(compiled)
    return rules


_ESCALATION = _index(ESCALATION_PATTERNS)
_INJECTION = _index(INJECTION_PATTERNS)


def _matches(norm: str, rules: dict[str, list[re.Pattern]]) -> bool:
    """Does any rule match at the start of any word of the normalised text."""
    pos = 0
    for word in norm.split(" "):
        for pattern in rules.get(word, ()):
            if pattern.match(norm, pos):
                return True
        pos += len(word) + 1
    return False


@dataclass
class PolicyContext:
    authenticated: bool
    auth_locked: bool
    needs_auth: bool  # the turn's intent touches account or order data
    consecutive_failures: int
    wants_human: bool = False  # the embedding classifier heard a request for a person


class PolicyEngine:
    def __init__(self, max_consecutive_failures: int = 3):
        self.max_consecutive_failures = max_consecutive_failures

    @staticmethod
    def wants_human(text: str) -> bool:
        return _wants_human(normalize(text), text)

    @staticmethod
    def is_injection(text: str) -> bool:
        return _is_injection(normalize(text), text)

    def decide(self, text: str, ctx: PolicyContext) -> PolicyDecision:
        norm = normalize(text)
        if _is_injection(norm, text):
            if ctx.consecutive_failures >= self.max_consecutive_failures:
                return PolicyDecision(action="escalate", reason="consecutive_failures")
            return PolicyDecision(action="refuse", reason="prompt_injection")
        if ctx.needs_auth and not ctx.authenticated:
            if ctx.auth_locked:
                return PolicyDecision(action="escalate", reason="auth_locked")
            return PolicyDecision(action="authenticate", reason="account_data_needs_pin")
        if ctx.wants_human or _wants_human(norm, text):
            return PolicyDecision(action="escalate", reason="caller_request")
        if ctx.consecutive_failures >= self.max_consecutive_failures:
            return PolicyDecision(action="escalate", reason="consecutive_failures")
        return PolicyDecision(action="continue")


def _is_injection(norm: str, text: str) -> bool:
    return _matches(norm, _INJECTION) or bool(_FAKE_HEADER.search(text.lower()))


def _wants_human(norm: str, text: str) -> bool:
    if negated_request(text):  # "I don't want to speak to a person", judged with its punctuation
        return False
    ws = {w for w in norm.split(" ") if w not in FILLERS}
    if ws and ws <= _BARE_HUMAN | _BARE_EXTRA and ws & _BARE_HUMAN:
        return True
    return _matches(norm, _ESCALATION)
