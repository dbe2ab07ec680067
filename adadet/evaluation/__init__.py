from .cost import (
    backbone_cost,
    backbone_flops,
    detector_parts,
    fixed_detections,
    model_cost,
    model_flops,
    model_flops_by_part,
    used_parameter_count,
)
from .depth_evaluation import checked_test_depths, device_name, evaluate_depths
from .depth_report import (
    format_table,
    pareto_front,
    report_depth_results,
    report_rows,
    write_report,
)
from ..utils.timing import ForwardTimer, Stopwatch
from .verification import verify_depth_results
