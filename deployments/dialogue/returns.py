"""The returns workflow of the local support agent: order, reason, confirmation, and only
then `create_return`, the one tool with a side effect.

The caller's words are never read back: the confirmation names the reason by its kind
("because it doesn't fit"), and the reason stored with the return is masked first.
"""

from __future__ import annotations

from common.pii import mask_pii
from deployments.policy.language import confirmation, words
from deployments.policy.slots import extract_order_number

# (words that mark the kind, how the agent says it), first match wins
_REASONS = [
    (
        {"fit", "fits", "size", "sizes", "big", "small", "tight", "loose", "large", "narrow", "wide", "short"},
        "because it doesn't fit",
    ),
    (
        {
            "broke",
            "broken",
            "damaged",
            "defective",
            "faulty",
            "cracked",
            "torn",
            "ripped",
            "scratched",
            "dented",
            "leaking",
            "leaks",
            "stopped",
            "apart",
            "off",
            "working",
            "work",
            "works",
        },
        "because it's damaged or faulty",
    ),
    ({"colour", "color", "colours", "colors", "shade"}, "because of the colour"),
    ({"wrong", "different", "ordered", "mistake"}, "because it isn't what you ordered"),
    (
        {"uncomfortable", "rub", "rubs", "hurt", "hurts", "pinch", "pinches", "itchy", "itches"},
        "because it's uncomfortable",
    ),
    ({"late", "delayed", "slow"}, "because it arrived late"),
    ({"mind", "need", "want", "like", "longer", "anymore", "gift", "present"}, "because you no longer want it"),
    ({"quality", "cheap", "described", "expected", "photo", "picture", "looks"}, "because it isn't as described"),
]
_CANCEL = [
    ("never", "mind"),
    ("forget", "it"),
    ("forget", "about", "it"),
    ("cancel",),
    ("do", "not", "want", "to", "return"),
]
DECLINED = "Okay, I won't start the return. Is there anything else?"


def spell(digits: str) -> str:
    """Digits read one by one, as people say order numbers."""
    return " ".join(digits)


def reason_phrase(text: str) -> str:
    """How the agent names the caller's reason when it confirms, without quoting them."""
    ws = set(words(text))
    for keys, phrase in _REASONS:
        if ws & keys:
            return phrase
    return "for the reason you gave"


_STATED = {"because", "cause", "cos", "since"}
_CLEAR_REASONS = {
    "fit",
    "fits",
    "size",
    "big",
    "small",
    "tight",
    "loose",
    "broken",
    "broke",
    "damaged",
    "defective",
    "faulty",
    "cracked",
    "torn",
    "wrong",
    "colour",
    "color",
}


def note_reason(slots: dict, text: str) -> None:
    """Keep a reason given with the request ("...because they're too small") for the reason step."""
    ws = words(text[:2000])
    if _STATED & set(ws) or _CLEAR_REASONS & set(ws):
        slots["stated_reason"] = mask_pii(text.strip().rstrip(".!?"))[:200]


def _cancels(text: str) -> bool:
    ws = words(text)[:40]  # "never mind" comes first in an answer, not deep in a speech
    return any(tuple(ws[i : i + len(p)]) == p for i in range(len(ws)) for p in _CANCEL)


def resume_prompt(slots: dict) -> str | None:
    """The question the agent was waiting on, asked again after an aside."""
    wf = slots.get("workflow") or {}
    if slots.get("awaiting") == "pin":
        return "When you're ready, please tell me your four digit PIN."
    if wf.get("step") == "reason":
        return f"Now, why are you returning the {wf.get('item', 'item')}?"
    if wf.get("step") == "confirm":
        return "So, shall I go ahead with the return?"
    if wf.get("step") == "order" or slots.get("awaiting") == "order_id":
        return "Now, which order is it? Please tell me the order number."
    return None


class ReturnsFlow:
    """Mixed into SupportAgent: uses its tools, `_lookup`, `_succeeded` and `_failed`."""

    async def _returns(self, text: str, r, session_id: str):
        """Collect the order, then the reason, confirm, and only then open the return."""
        slots = r.memory["slots"]
        wf = slots.setdefault("workflow", {"name": "return", "step": "order"})
        r.intent = "returns"
        if wf["step"] != "confirm" and text and _cancels(text):
            slots.pop("workflow", None)
            return self._succeeded(r.say(DECLINED))
        if wf["step"] == "reason" and extract_order_number(text):
            wf["step"] = "order"  # "sorry, I meant 10043": the order is corrected, not a reason
        if wf["step"] == "order":
            order_id = extract_order_number(text) or slots.pop("order_id", None)
            if not order_id:
                return r.say("Which order would you like to return? Please tell me the order number.")
            found = await self._lookup(order_id, r, session_id)
            if found is None:
                return r
            slots.pop("awaiting", None)
            wf.update(step="reason", order_id=order_id, item=found["item"])
            r.say(f"Okay, the {found['item']} from order {spell(order_id)}.")
            if not (text := slots.pop("stated_reason", "")):
                return self._succeeded(r.say("Why are you returning it?"))
        if wf["step"] == "reason":
            reason = mask_pii(text.strip().rstrip(".!?"))[:200]  # stored with the return: masked
            wf.update(step="confirm", reason=reason, reason_said=reason_phrase(text))
            order = spell(wf["order_id"])
            r.say(f"To confirm: return the {wf['item']} from order {order}, {wf['reason_said']}.", "Shall I go ahead?")
            return self._succeeded(r)
        return await self._confirm_return(text, r, session_id)

    async def _confirm_return(self, text: str, r, session_id: str):
        """Only a clear yes opens the return: a no declines, anything mixed or unclear asks again."""
        slots, wf = r.memory["slots"], r.memory["slots"]["workflow"]
        answer = confirmation(text)
        if answer == "no":
            slots.pop("workflow", None)
            return self._succeeded(r.say(DECLINED))
        if answer != "yes":
            return r.say("Sorry, shall I start the return? Please say yes or no.")
        args = {"customer_id": r.memory["customer_id"], "order_id": wf["order_id"], "reason": wf.get("reason", "")}
        result = await self._tools.call("create_return", args, session_id, turn_id=r.turn_id)
        r.tool_results.append(result)
        slots.pop("workflow", None)
        if result.error == "in_progress":  # this turn's first run is still opening it: never a second one
            r.say("That return is being opened right now.", "We'll email you the reference and a prepaid label.")
            return self._succeeded(r)
        if not result.ok:
            r.say("I couldn't start the return just now. Nothing was changed; please try again later.")
            return self._failed(r)
        reference = spell(result.output["return_id"].split("-")[0])
        r.say(f"Done. Your return reference is {reference}.", "We'll email you a prepaid return label.")
        return self._succeeded(r)
