import numpy as np
import pytest

from common.audio import StreamResampler, read_wav, resample, write_wav


def tone(freq: float, rate: int, seconds: float = 1.0) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t) * 32767).astype(np.int16).tobytes()


def peak_hz(pcm: bytes, rate: int) -> float:
    x = np.frombuffer(pcm, dtype=np.int16).astype(np.float32)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.fft.rfftfreq(len(x), 1 / rate)[int(np.argmax(spectrum))]


@pytest.mark.parametrize("src, dst", [(22050, 16000), (16000, 48000), (48000, 16000), (16000, 8000)])
def test_resample_keeps_pitch_and_duration(src, dst):
    out = resample(tone(440, src), src, dst)
    assert abs(len(out) / 2 - dst) <= 2
    assert abs(peak_hz(out, dst) - 440) < 3


def test_stream_resampler_matches_whole_clip():
    pcm = tone(300, 48000, 2.0)
    stream = StreamResampler(48000, 16000)
    chunks = [stream.process(pcm[i : i + 1920]) for i in range(0, len(pcm), 1920)]
    chunks.append(stream.process(b"", last=True))
    out = b"".join(chunks)
    assert abs(len(out) / 2 - 32000) <= 64
    assert abs(peak_hz(out, 16000) - 300) < 3
    # no clicks at chunk edges: the sample-to-sample step never exceeds a clean sine's
    x = np.frombuffer(out, dtype=np.int16).astype(np.int32)[200:-200]
    assert np.max(np.abs(np.diff(x))) < 0.5 * 32767 * 2 * np.pi * 300 / 16000 * 1.2


def test_same_rate_is_a_no_op():
    pcm = tone(100, 16000)
    assert resample(pcm, 16000, 16000) is pcm
    assert StreamResampler(16000, 16000).process(pcm) is pcm


def test_wav_round_trip_and_stereo_downmix(tmp_path):
    pcm = tone(200, 22050, 0.5)
    write_wav(tmp_path / "a.wav", pcm, 22050)
    assert read_wav(str(tmp_path / "a.wav")) == (pcm, 22050)
    import wave

    stereo = np.repeat(np.frombuffer(pcm, dtype=np.int16), 2).tobytes()
    with wave.open(str(tmp_path / "s.wav"), "wb") as w:
        w.setnchannels(2), w.setsampwidth(2), w.setframerate(22050), w.writeframes(stereo)
    mono, rate = read_wav(str(tmp_path / "s.wav"))
    assert rate == 22050 and mono == pcm
