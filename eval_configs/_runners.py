# The task layout of every OpenCompass config here (eval_style.py, select_models*.py take it with
# read_base): NaivePartitioner(n=8) puts up to 8 datasets in one task, so each model gets one
# inference task and one evaluation task holding all its datasets; LocalRunner runs two at a time
# (`--debug`, the Makefile's OC_ARGS default, runs them one by one in OpenCompass's own process).
from opencompass.partitioners import NaivePartitioner
from opencompass.runners import LocalRunner
from opencompass.tasks import OpenICLEvalTask, OpenICLInferTask

infer = dict(
    partitioner=dict(type=NaivePartitioner, n=8),
    runner=dict(type=LocalRunner, max_num_workers=2, task=dict(type=OpenICLInferTask)),
)
eval = dict(
    partitioner=dict(type=NaivePartitioner, n=8),
    runner=dict(type=LocalRunner, max_num_workers=2, task=dict(type=OpenICLEvalTask)),
)
