// Browser caller for protocol v1 (docs/protocol.md): microphone in, agent audio out, and what
// the call is doing, on one page. Plain ES module, no build step, nothing fetched from outside.

const WIRE_RATE = 16000;
const CALLER_ID = /^[A-Za-z0-9_.-]{1,64}$/;
const VOICE_LEVEL = 0.01; // mic frame RMS that counts as speech for the page's latency clock
const CONNECT_TIMEOUT_MS = 10000;
const TARGET_MS = 700;
// A call whose socket drops without a hang-up is held by the server for a resume (30 s by
// default): dial it back with its resume token, backing off, for this long (?resume_s=, 0: never).
// A browser cannot see the HTTP status of a refused WebSocket, so a refused token is tried
// until the time is up too.
const RESUME_MS = 1000 * Number(new URLSearchParams(location.search).get("resume_s") ?? 30);
const RESUME_BACKOFF_MS = [200, 500, 1000, 2000];

const $ = (id) => document.getElementById(id);

// Counters a test (or a curious operator, in the console) can read.
export const stats = {
  state: "idle",
  framesSent: 0,
  partials: 0, // partial transcripts shown while the caller spoke
  audioBytesReceived: 0,
  samplesPlayed: 0,
  clears: 0,
  bufferedAfterClear: null, // what the player held right after the last audio.clear (0: emptied)
  latencies: [], // {turn, ms, kind, server}
  lastEnd: null, // session.ended reason of the last call
  sessionId: null,
  resumes: 0, // times the call was taken up again after a dropped connection
};
window.voiceStats = stats;

let call = null;

function wsBase() {
  // ?server=ws://host:port points the page at another gateway; by default the one serving it.
  const override = new URLSearchParams(location.search).get("server");
  if (override) return override.replace(/\/+$/, "");
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}`;
}

function setConn(state, text) {
  stats.state = state;
  const el = $("conn");
  el.dataset.state = state;
  el.textContent = text || state;
  const live = state === "connecting" || state === "connected" || state === "reconnecting";
  $("connect").disabled = live;
  $("hangup").disabled = !live;
  $("text").disabled = $("send").disabled = state !== "connected";
  $("reconnect").hidden = !(state === "dropped" || state === "failed" || state === "busy");
}

function message(text, kind = "info") {
  const el = $("message");
  el.hidden = !text;
  el.textContent = text || "";
  el.dataset.kind = kind;
}

function logLine(kind, text) {
  const li = document.createElement("li");
  li.className = kind;
  li.textContent = text;
  const log = $("log");
  log.append(li);
  log.scrollTop = log.scrollHeight;
}

function logEvent(ev) {
  const li = document.createElement("li");
  li.textContent = JSON.stringify(ev);
  const list = $("events");
  list.append(li);
  while (list.children.length > 300) list.firstChild.remove();
}

function drawLatency() {
  const rows = stats.latencies;
  $("latency").replaceChildren(
    ...rows.map((r) => {
      const li = document.createElement("li");
      const server = r.server != null ? `, server ${Math.round(r.server)} ms` : "";
      li.textContent = `turn ${r.turn ?? "?"}: ${Math.round(r.ms)} ms${r.kind === "typed" ? " (typed)" : ""}${server}`;
      return li;
    }),
  );
  const svg = $("chart");
  const ns = "http://www.w3.org/2000/svg";
  const top = Math.max(1500, ...rows.map((r) => r.ms));
  const shown = rows.slice(-20);
  const w = 300 / Math.max(shown.length, 10);
  const y = (ms) => 100 - (ms / top) * 90;
  const nodes = shown.map((r, i) => {
    const rect = document.createElementNS(ns, "rect");
    rect.setAttribute("x", i * w + 1);
    rect.setAttribute("width", Math.max(w - 2, 1));
    rect.setAttribute("y", y(r.ms));
    rect.setAttribute("height", 100 - y(r.ms));
    const title = document.createElementNS(ns, "title");
    title.textContent = `${Math.round(r.ms)} ms`;
    rect.append(title);
    return rect;
  });
  const line = document.createElementNS(ns, "line");
  line.setAttribute("x1", 0);
  line.setAttribute("x2", 300);
  line.setAttribute("y1", y(TARGET_MS));
  line.setAttribute("y2", y(TARGET_MS));
  svg.replaceChildren(line, ...nodes);
}

class Call {
  constructor(callerId, locale) {
    this.callerId = callerId;
    this.locale = locale;
    this.started = false; // the call began (session.started once)
    this.live = false; // a socket carries it now (session.started on this one)
    this.token = null; // resume token from the latest session.started
    this.droppedAt = null; // while dialling a dropped call back: when it dropped
    this.ended = null; // session.ended reason
    this.unheard = []; // typed turns sent and not yet taken up ("thinking")
    this.moved = false; // session.ended "draining": the server moves the call
    this.hungUp = false;
    this.lastVoiceAt = 0;
    // A caller turn waiting for the agent's first audio: {since, kind, turn, ready}. Its turn id
    // comes with the final transcript, and its audio starts right after its first agent.text:
    // audio still playing from an earlier reply does not count.
    this.awaiting = null;
  }

  async start() {
    setConn("connecting", "connecting…");
    message("");
    this.ctx = new AudioContext({ latencyHint: "interactive" });
    await this.ctx.audioWorklet.addModule("/static/worklets.js");
    this.player = new AudioWorkletNode(this.ctx, "agent-player", {
      numberOfInputs: 0,
      outputChannelCount: [1],
      processorOptions: { primeMs: 60 },
    });
    this.player.port.onmessage = (e) => {
      if (e.data.type !== "stats") return;
      stats.samplesPlayed = e.data.played;
      if (e.data.cleared) stats.bufferedAfterClear = e.data.buffered;
    };
    this.player.connect(this.ctx.destination);
    await this.ctx.resume();
    await this.startMic();
    this.open();
  }

  async startMic() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      $("mic-state").textContent = "unavailable";
      message("This page can use the microphone only over https or on localhost. You can still type.", "error");
      return;
    }
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      });
    } catch (err) {
      $("mic-state").textContent = "blocked";
      const denied = err && (err.name === "NotAllowedError" || err.name === "SecurityError");
      message(
        denied
          ? "Microphone access was denied. Allow it in the browser's site settings and reconnect; meanwhile you can type."
          : `No microphone could be opened (${err && err.name}). You can still type.`,
        "error",
      );
      return;
    }
    const source = this.ctx.createMediaStreamSource(this.stream);
    this.mic = new AudioWorkletNode(this.ctx, "mic-capture", { numberOfOutputs: 0 });
    this.mic.port.onmessage = (e) => this.onMicFrame(e.data);
    source.connect(this.mic);
    $("mic-state").textContent = "on";
  }

  onMicFrame({ pcm, level }) {
    if (level > VOICE_LEVEL) this.lastVoiceAt = performance.now();
    if (this.live && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(pcm);
      stats.framesSent++;
    }
  }

  open() {
    const q = new URLSearchParams({
      caller_id: this.callerId,
      locale: this.locale,
      sample_rate: WIRE_RATE,
      output_sample_rate: WIRE_RATE,
    });
    if (this.droppedAt !== null) q.set("resume", this.token);
    this.url = `${wsBase()}/ws/call?${q}`;
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (err) {
      this.fail(`The server address is not valid: ${err.message}`);
      return;
    }
    this.ws = ws;
    ws.binaryType = "arraybuffer";
    this.timer = setTimeout(() => {
      if (!this.live) ws.close();
    }, CONNECT_TIMEOUT_MS);
    ws.onmessage = (e) => (typeof e.data === "string" ? this.onEvent(e.data) : this.onAudio(e.data));
    ws.onclose = (e) => this.onClose(e);
  }

  onAudio(data) {
    stats.audioBytesReceived += data.byteLength;
    if (this.awaiting && this.awaiting.ready) {
      const ms = performance.now() - this.awaiting.since;
      stats.latencies.push({ turn: this.awaiting.turn, ms, kind: this.awaiting.kind, server: null });
      this.awaiting = null;
      drawLatency();
    }
    this.player.port.postMessage({ type: "audio", pcm: data }, [data]);
  }

  onEvent(raw) {
    let ev;
    try {
      ev = JSON.parse(raw);
    } catch {
      return;
    }
    logEvent(ev);
    switch (ev.type) {
      case "session.started":
        this.started = this.live = true;
        this.token = ev.resume_token || null;
        stats.sessionId = ev.session_id;
        clearTimeout(this.timer);
        if (ev.resumed) {
          stats.resumes++;
          this.droppedAt = null;
          message("The connection came back: the call goes on.");
          if (this.moved) {
            // Typed turns that crossed the server's move of the call: sent again.
            this.moved = false;
            for (const text of this.unheard) this.ws.send(JSON.stringify({ type: "text", text }));
          }
        }
        setConn("connected", "connected");
        break;
      case "transcript":
        if (ev.final) {
          $("partial").textContent = "";
          logLine("caller", ev.text);
          if (this.awaiting && this.awaiting.turn == null) this.awaiting.turn = ev.turn_id;
        } else {
          $("partial").textContent = ev.text;
          stats.partials++;
        }
        break;
      case "agent.text":
        logLine("agent", ev.text);
        if (this.awaiting && this.awaiting.turn === ev.turn_id) this.awaiting.ready = true;
        break;
      case "agent.state":
        $("agent-state").textContent = ev.state;
        if (ev.state === "thinking") this.unheard.shift(); // the agent took up the oldest typed turn
        break;
      case "user.state":
        $("user-state").textContent = ev.state;
        // The caller finished speaking: the clock runs from their last voiced frame.
        if (ev.state === "silent" && this.lastVoiceAt) this.awaiting = { since: this.lastVoiceAt, kind: "voice", turn: null };
        else if (ev.state === "speaking") this.awaiting = null;
        break;
      case "audio.clear":
        stats.clears++;
        this.player.port.postMessage({ type: "clear" });
        break;
      case "turn.metrics": {
        const row = stats.latencies.findLast((r) => r.turn === ev.turn_id);
        if (row && ev.eos_to_first_audio_ms != null) {
          row.server = ev.eos_to_first_audio_ms;
          drawLatency();
        }
        break;
      }
      case "escalation":
        logLine("escalation", `Transferring you to a person (${ev.reason}).`);
        message(`The call is being handed to a human agent (${ev.reason}).`);
        break;
      case "error":
        logLine("error", `${ev.code}: ${ev.message}`);
        message(`${ev.message} (${ev.code})`, "error");
        break;
      case "session.ended":
        if (ev.reason === "draining" && ev.resume_token) {
          this.token = ev.resume_token; // the server moves the call to another replica: dial it back
          this.moved = true;
          break;
        }
        this.ended = ev.reason;
        break;
    }
  }

  sendText(text) {
    if (!this.live) return;
    this.unheard.push(text);
    this.ws.send(JSON.stringify({ type: "text", text }));
    this.awaiting = { since: performance.now(), kind: "typed", turn: null };
  }

  hangup() {
    this.hungUp = true;
    if (this.droppedAt !== null) {
      // Between sockets: stop dialling; the server ends the held call when its window passes.
      clearTimeout(this.retry);
      this.droppedAt = null;
      if (this.ws.readyState !== WebSocket.CLOSED) this.ws.close();
      this.stopAudio();
      setConn("ended", "call ended");
      message("Call ended.");
    } else if (this.ws && this.ws.readyState === WebSocket.OPEN && this.live) {
      this.ws.send(JSON.stringify({ type: "hangup" }));
      setTimeout(() => this.ws.readyState !== WebSocket.CLOSED && this.ws.close(), 3000);
    } else if (this.ws) {
      this.ws.close();
    }
  }

  onClose(e) {
    clearTimeout(this.timer);
    const wasLive = this.live;
    this.live = false;
    if (this.started && !this.ended && !this.hungUp && this.token && RESUME_MS > 0) {
      // A drop: no session.ended and not ours. Keep the microphone and the player running (frames
      // are not sent while down) and dial the same call back.
      if (wasLive) this.dropped(e); // else an attempt to dial back failed: try again
      this.resumeLater(e);
      return;
    }
    this.stopAudio();
    stats.lastEnd = this.ended;
    $("partial").textContent = "";
    $("agent-state").textContent = $("user-state").textContent = "-";
    if (["at_capacity", "no_warm_session", "overloaded"].includes(this.ended)) {
      setConn("busy", "busy");
      message("All lines are busy: the agent is at capacity. Please try again in a moment.", "error");
    } else if (this.ended) {
      setConn("ended", "call ended");
      const why = {
        hangup: "You hung up.",
        agent_hangup: "The agent ended the call.",
        escalated: "The call was handed to a human.",
        idle_timeout: "The call ended after a long silence.",
      }[this.ended];
      message(`Call ended: ${why || this.ended}`);
    } else if (!this.started) {
      this.fail(
        e.code === 1006
          ? `Cannot reach the voice server at ${wsBase()} (or it refused the call). Check that the platform is running.`
          : `The server closed the connection (${e.code} ${e.reason}).`,
      );
    } else if (this.hungUp) {
      setConn("ended", "call ended");
      message("Call ended.");
    } else {
      setConn("dropped", "connection lost");
      message(`The connection dropped (${e.code}${e.reason ? " " + e.reason : ""}). Press Reconnect to call again.`, "error");
    }
  }

  dropped(e) {
    this.droppedAt = performance.now();
    this.attempts = 0;
    this.awaiting = null; // that turn's latency cannot be measured across the gap
    $("partial").textContent = "";
    $("agent-state").textContent = $("user-state").textContent = "-";
    setConn("reconnecting", "Reconnecting…");
    message(`The connection dropped (${e.code}): reconnecting to your call…`, "error");
  }

  resumeLater(e) {
    const delay = RESUME_BACKOFF_MS[Math.min(this.attempts++, RESUME_BACKOFF_MS.length - 1)];
    if (performance.now() + delay - this.droppedAt > RESUME_MS) {
      this.droppedAt = null;
      this.token = null; // the window is over: a close now is the end
      this.onClose(e);
      return;
    }
    this.retry = setTimeout(() => this.open(), delay);
  }

  fail(text) {
    this.stopAudio();
    setConn("failed", "not connected");
    message(text, "error");
  }

  stopAudio() {
    // Idempotent: a close that ends in fail() reaches here twice.
    if (this.stream) this.stream.getTracks().forEach((t) => t.stop());
    if (this.ctx) this.ctx.close();
    this.stream = this.ctx = null;
    $("mic-state").textContent = "off";
  }
}

async function dial() {
  const callerId = $("caller").value.trim();
  const locale = $("locale").value.trim() || "en-US";
  if (!CALLER_ID.test(callerId)) {
    message("Caller id: 1 to 64 letters, digits, dots, dashes or underscores.", "error");
    $("caller").focus();
    return;
  }
  call = new Call(callerId, locale);
  try {
    await call.start();
  } catch (err) {
    call.fail(`Could not start audio: ${err.message}`);
  }
}

$("dial").addEventListener("submit", (e) => {
  e.preventDefault();
  dial();
});
$("reconnect").addEventListener("click", dial);
$("hangup").addEventListener("click", () => call && call.hangup());
$("typed").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("text").value.trim();
  if (!text || !call) return;
  call.sendText(text);
  $("text").value = "";
});
setConn("idle", "not connected");
drawLatency();
