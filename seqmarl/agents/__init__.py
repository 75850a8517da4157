"""Agents: the :class:`Policy` protocol, and HF causal LMs held N at a time by an AgentPool."""

from seqmarl.agents.base import Policy
from seqmarl.agents.hf import HFPolicy, LMAgent, ValueHead
from seqmarl.agents.loading import load_model_and_tokenizer
from seqmarl.agents.pool import GENERATORS, POLICY_KINDS, AgentPool, PolicyKind
from seqmarl.agents.sampling import response_forward, sample, selective_log_softmax
from seqmarl.agents.separate import SeparateCopyPolicy
from seqmarl.agents.shared import SharedLoraPolicy
from seqmarl.agents.tiny import byte_tokenizer, tiny_model_and_tokenizer
from seqmarl.types import Completions

__all__ = [
    "GENERATORS",
    "POLICY_KINDS",
    "AgentPool",
    "Completions",
    "HFPolicy",
    "LMAgent",
    "Policy",
    "PolicyKind",
    "SeparateCopyPolicy",
    "SharedLoraPolicy",
    "ValueHead",
    "byte_tokenizer",
    "load_model_and_tokenizer",
    "response_forward",
    "sample",
    "selective_log_softmax",
    "tiny_model_and_tokenizer",
]
