"""Thin hooks for the task YAMLs beside this file (``lm_eval --include_path tasks``).

All logic lives in ``memcollab_eval.evaluation.tasks``; the memory variants read the bank
and target identity from MEMCOLLAB_BANK and MEMCOLLAB_TARGET (MEMCOLLAB_TOP_K optional).
The data comes from the hub, or from the copy shipped in the package when the hub is unreachable
or MEMCOLLAB_OFFLINE=1 / ``--metadata memcollab_offline=true`` asks for it
(``memcollab_eval.evaluation.task_yaml.TaskDataset``).
"""

from memcollab_eval.adapters import get_spec
from memcollab_eval.evaluation.task_yaml import TaskDataset
from memcollab_eval.evaluation.tasks import EnvProcessDocs, ProcessResults

dataset_math500 = TaskDataset("math500")
dataset_gsm8k = TaskDataset("gsm8k")
dataset_mbpp = TaskDataset("mbpp")
dataset_humaneval = TaskDataset("humaneval")

process_docs_math500_memcollab = EnvProcessDocs("math500", with_memory=True)
process_docs_math500_nomemory = EnvProcessDocs("math500", with_memory=False)
process_docs_gsm8k_memcollab = EnvProcessDocs("gsm8k", with_memory=True)
process_docs_gsm8k_nomemory = EnvProcessDocs("gsm8k", with_memory=False)
process_docs_mbpp_memcollab = EnvProcessDocs("mbpp", with_memory=True)
process_docs_mbpp_nomemory = EnvProcessDocs("mbpp", with_memory=False)
process_docs_humaneval_memcollab = EnvProcessDocs("humaneval", with_memory=True)
process_docs_humaneval_nomemory = EnvProcessDocs("humaneval", with_memory=False)

process_results_math500 = ProcessResults(get_spec("math500"))
process_results_gsm8k = ProcessResults(get_spec("gsm8k"))
process_results_mbpp = ProcessResults(get_spec("mbpp"))
process_results_humaneval = ProcessResults(get_spec("humaneval"))
