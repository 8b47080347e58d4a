"""The fine-tuning pipeline and its compiled form (installed as ocrtune.pipelines)."""
