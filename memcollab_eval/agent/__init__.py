"""The agent protocol: multi-turn episodes with code run in the sandbox.

This package imports no lm-eval code (the scorer unwraps transcripts through it); the
lm-eval model wrapper lives in :mod:`memcollab_eval.agent.agent_lm` and registers
``memcollab_agent`` when imported.
"""

from memcollab_eval.agent.protocol import AgentConfig, AgentTask, BlockRun, Episode, EpisodeRunner, run_episode
from memcollab_eval.agent.transcript import (
    Transcript,
    TranscriptError,
    decode_transcript,
    encode_episode,
    readable,
    scored_text,
    turns_of,
)

__all__ = [
    "AgentConfig", "AgentTask", "BlockRun", "Episode", "EpisodeRunner", "Transcript", "TranscriptError",
    "decode_transcript", "encode_episode", "readable", "run_episode", "scored_text", "turns_of",
]
