"""``exopipe dlq list | replay``: what failed, why, and sending it through again.

Dead letters are ``exotel.recording.failed`` (each holds its whole original recording_ready
event) and the ``failed`` results on ``exotel.settings.result`` (each names where its command was
read). Replays rely on idempotent sinks, never on remembering what was replayed: the archiver
skips an object already stored with the same sha256, and the settings worker answers a command
id it has seen with its recorded result, without a PUT.
"""
