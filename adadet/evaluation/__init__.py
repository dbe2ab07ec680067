from .cost import backbone_cost, backbone_flops, model_cost, model_flops, used_parameter_count
