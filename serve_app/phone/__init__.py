"""Phone calls: carriers' media streams (Twilio Media Streams and streams of the same shape) reach the same
Call as `/ws/call`, through a socket adapter (`line.py`); `webhook.py` answers the call's ring with TwiML."""
