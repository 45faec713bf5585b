"""Fine-tuning toolkit: classification, cross-encoder ranking and causal-LM generation with
full fine-tuning, LoRA, AdaLoRA, IA3 or a bottleneck adapter (see ``core.py``).

    from liveshelf.text.finetune import FinetuneConfig, Finetuner
    ft = Finetuner(FinetuneConfig(task="classification", method="lora", epochs=2)).fit(texts, labels)
    ft.evaluate(test_texts, test_labels)["macro_f1"]
    ft.save("out/lora")            # adapters + head only
    ft.merge_and_save("out/serve") # plain Hugging Face folder
"""

from liveshelf.text.finetune.adapters import BottleneckAdapter, add_bottleneck_adapters, detect_target_modules
from liveshelf.text.finetune.config import DEFAULT_LR, METHODS, TASKS, FinetuneConfig
from liveshelf.text.finetune.core import Finetuner
from liveshelf.text.finetune.loading import resolve_model_path
from liveshelf.text.finetune.report import PeakMemory, classification_report, ranking_report

__all__ = [
    "DEFAULT_LR",
    "METHODS",
    "TASKS",
    "BottleneckAdapter",
    "FinetuneConfig",
    "Finetuner",
    "PeakMemory",
    "add_bottleneck_adapters",
    "classification_report",
    "detect_target_modules",
    "ranking_report",
    "resolve_model_path",
]
