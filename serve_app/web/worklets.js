// Audio worklets for the browser caller: microphone capture and agent playback.
// Both run on the audio thread, so capture and playback never wait for the page's main thread.

const WIRE_RATE = 16000; // protocol v1: PCM s16le mono, 16 kHz both ways (docs/protocol.md)
const FRAME = 320; // 20 ms at 16 kHz: one binary WebSocket frame

// Microphone -> 16 kHz s16le frames of 20 ms, each with its RMS level for the page's speech clock.
class MicCapture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = sampleRate / WIRE_RATE; // input samples per output sample
    this.pos = 0; // read position into `prev` + current block, in input samples
    this.prev = 0; // last input sample of the previous block, for interpolation across blocks
    this.frame = new Int16Array(FRAME);
    this.n = 0;
    this.sumSq = 0;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true; // no microphone yet (or stopped): keep the node alive
    // Linear interpolation over [prev, ...channel]; a box average first would matter only above
    // 8 kHz, which speech recognition ignores.
    const len = channel.length;
    while (this.pos < len) {
      const i = Math.floor(this.pos);
      const frac = this.pos - i;
      const a = i === 0 ? this.prev : channel[i - 1];
      const b = channel[i];
      const x = Math.max(-1, Math.min(1, a + (b - a) * frac));
      this.frame[this.n++] = x < 0 ? x * 0x8000 : x * 0x7fff;
      this.sumSq += x * x;
      if (this.n === FRAME) {
        const pcm = this.frame.buffer;
        this.port.postMessage({ pcm, level: Math.sqrt(this.sumSq / FRAME) }, [pcm]);
        this.frame = new Int16Array(FRAME);
        this.n = 0;
        this.sumSq = 0;
      }
      this.pos += this.step;
    }
    this.pos -= len;
    this.prev = channel[len - 1];
    return true;
  }
}

// Agent audio (16 kHz s16le chunks) -> speakers, through a small jitter buffer.
// Playback starts once `primeMs` is buffered, or when audio has waited that long (a short last
// sentence must not stall). `clear` drops everything buffered at once (protocol's audio.clear).
class AgentPlayer extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const primeMs = (options.processorOptions && options.processorOptions.primeMs) || 60;
    this.prime = Math.round((WIRE_RATE * primeMs) / 1000);
    this.primeFrames = Math.round((sampleRate * primeMs) / 1000);
    this.step = WIRE_RATE / sampleRate;
    this.queue = []; // Float32Array chunks at 16 kHz
    this.buffered = 0; // samples in the queue, at 16 kHz
    this.offset = 0; // fractional read position in queue[0]
    this.playing = false;
    this.waited = 0; // output frames waited while priming
    this.played = 0; // samples played, at 16 kHz
    this.sinceReport = 0;
    this.port.onmessage = (e) => this.onMessage(e.data);
  }

  onMessage(msg) {
    if (msg.type === "audio") {
      const s16 = new Int16Array(msg.pcm);
      const f = new Float32Array(s16.length);
      for (let i = 0; i < s16.length; i++) f[i] = s16[i] / 0x8000;
      this.queue.push(f);
      this.buffered += f.length;
    } else if (msg.type === "clear") {
      this.queue = [];
      this.buffered = 0;
      this.offset = 0;
      this.playing = false;
      this.waited = 0;
      this.report(true);
    }
  }

  report(cleared = false) {
    this.port.postMessage({ type: "stats", played: this.played, buffered: this.buffered, playing: this.playing, cleared });
    this.sinceReport = 0;
  }

  process(_inputs, outputs) {
    const out = outputs[0][0];
    if (!this.playing && this.buffered > 0) {
      this.waited += out.length;
      if (this.buffered >= this.prime || this.waited >= this.primeFrames) {
        this.playing = true;
        this.waited = 0;
      }
    }
    for (let k = 0; k < out.length; k++) {
      if (!this.playing || this.queue.length === 0) {
        out[k] = 0;
        continue;
      }
      const head = this.queue[0];
      const i = Math.floor(this.offset);
      const frac = this.offset - i;
      const a = head[i];
      const b = i + 1 < head.length ? head[i + 1] : this.queue.length > 1 ? this.queue[1][0] : a;
      out[k] = a + (b - a) * frac;
      this.offset += this.step;
      while (this.queue.length && this.offset >= this.queue[0].length) {
        this.offset -= this.queue[0].length;
        this.played += this.queue[0].length;
        this.buffered -= this.queue[0].length;
        this.queue.shift();
      }
    }
    if (this.playing && this.queue.length === 0) {
      this.playing = false; // underrun or end of reply: prime again before the next audio
      this.offset = 0;
      this.report();
    }
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    this.sinceReport += out.length;
    if (this.sinceReport >= sampleRate / 10) this.report();
    return true;
  }
}

registerProcessor("mic-capture", MicCapture);
registerProcessor("agent-player", AgentPlayer);
