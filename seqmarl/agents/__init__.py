"""Agents: Hugging Face causal-LM learners, held N at a time by an :class:`AgentPool`."""

from seqmarl.agents.hf import LMAgent, ValueHead
from seqmarl.agents.loading import load_model_and_tokenizer
from seqmarl.agents.pool import AgentPool
from seqmarl.agents.sampling import Completions, response_forward, sample, selective_log_softmax
from seqmarl.agents.tiny import byte_tokenizer, tiny_model_and_tokenizer

__all__ = [
    "AgentPool",
    "Completions",
    "LMAgent",
    "ValueHead",
    "byte_tokenizer",
    "load_model_and_tokenizer",
    "response_forward",
    "sample",
    "selective_log_softmax",
    "tiny_model_and_tokenizer",
]
