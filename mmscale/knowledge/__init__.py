"""The knowledge-density engine: descriptors, enrichment, pairing, comparative text, filtering,
VQA <-> caption reconstruction and density reports (docs/knowledge_engine.md).

Import rule: this package uses `mmscale.data` (records io, world vocabulary) and `mmscale.errors`
only; the trainer never calls an LLM.
"""
