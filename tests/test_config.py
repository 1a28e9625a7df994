import pytest

from common.config import ConfigError, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no stray .env
    for k in ("DEEPGRAM_API_KEY", "OPENAI_API_KEY", "VOICE_DEEPGRAM_API_KEY", "VOICE_OPENAI_API_KEY"):
        monkeypatch.delenv(k, raising=False)


def test_defaults_are_the_offline_stack_and_the_seed_thresholds():
    s = load_settings()
    assert (s.asr_provider, s.tts_provider, s.dialogue_provider) == ("whisper", "piper", "local")
    assert s.confidence_threshold == 0.6 and s.max_consecutive_failures == 3
    assert s.turn_timeout_ms == 5000 and s.max_turns == 50 and s.session_ttl_s == 1800
    assert s.breaker_failure_threshold == 5 and s.breaker_recovery_s == 30
    assert s.http_host == "127.0.0.1"


@pytest.mark.parametrize(
    "env, var",
    [
        ({"VOICE_ASR_PROVIDER": "deepgram"}, "VOICE_DEEPGRAM_API_KEY"),
        ({"VOICE_TTS_PROVIDER": "openai"}, "VOICE_OPENAI_API_KEY"),
        ({"VOICE_DIALOGUE_PROVIDER": "openai", "OPENAI_API_KEY": " "}, "VOICE_OPENAI_API_KEY"),
    ],
)
def test_cloud_provider_without_key_fails_naming_the_variable(monkeypatch, env, var):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError, match=var):
        load_settings()


def test_provider_keys_accept_the_usual_names(monkeypatch):
    monkeypatch.setenv("VOICE_TTS_PROVIDER", "openai")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert load_settings().openai_api_key.get_secret_value() == "sk-test"


def test_bad_values_name_the_variable(monkeypatch):
    monkeypatch.setenv("VOICE_ASR_PROVIDER", "whisperx")
    monkeypatch.setenv("VOICE_CONFIDENCE_THRESHOLD", "2")
    with pytest.raises(ConfigError) as exc:
        load_settings()
    assert "VOICE_ASR_PROVIDER" in str(exc.value) and "VOICE_CONFIDENCE_THRESHOLD" in str(exc.value)


def test_dotenv_file_is_read(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("VOICE_MAX_TURNS=7\n")
    assert load_settings().max_turns == 7


def test_cloud_providers_are_selected_with_their_keys_and_endpoints(monkeypatch):
    monkeypatch.setenv("VOICE_ASR_PROVIDER", "deepgram")
    monkeypatch.setenv("DEEPGRAM_API_KEY", "dg-key")
    monkeypatch.setenv("VOICE_DEEPGRAM_URL", "ws://127.0.0.1:9")
    monkeypatch.setenv("VOICE_TTS_PROVIDER", "openai")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    s = load_settings()
    assert (s.asr_provider, s.tts_provider) == ("deepgram", "openai")
    assert s.deepgram_api_key.get_secret_value() == "dg-key" and s.deepgram_url == "ws://127.0.0.1:9"
    assert s.openai_tts_model == "gpt-4o-mini-tts" and "dg-key" not in repr(s)


def test_cli_up_fails_fast_naming_the_variable(monkeypatch, capsys):
    from serve_app.cli import main

    monkeypatch.setenv("VOICE_ASR_PROVIDER", "deepgram")
    assert main(["up"]) == 2
    assert "VOICE_DEEPGRAM_API_KEY" in capsys.readouterr().err


def test_session_actor_resources_are_json_custom_resources(monkeypatch):
    assert load_settings().session_actor_resources == {}
    monkeypatch.setenv("VOICE_SESSION_ACTOR_RESOURCES", '{"voice_session": 0.01}')
    assert load_settings().session_actor_resources == {"voice_session": 0.01}
    for bad in ('{"CPU": 1}', '{"voice_session": 1.5}', '{"voice_session": 0}', "voice_session"):
        monkeypatch.setenv("VOICE_SESSION_ACTOR_RESOURCES", bad)
        with pytest.raises(ConfigError, match="VOICE_SESSION_ACTOR_RESOURCES"):
            load_settings()


@pytest.mark.parametrize("bad", ["10", "30", "220"])
def test_output_frame_ms_is_a_multiple_of_20_from_20_to_200(monkeypatch, bad):
    assert load_settings().output_frame_ms == 100
    monkeypatch.setenv("VOICE_OUTPUT_FRAME_MS", bad)
    with pytest.raises(ConfigError, match="VOICE_OUTPUT_FRAME_MS"):
        load_settings()
