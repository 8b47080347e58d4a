"""KFP components: one pipeline step per module, each a thin call into ocrtune (installed as ocrtune.components)."""
