"""ViT-ADN's group outputs (what MODEL.ADN.DISTILL.FEATURES "group1".."group4" distill)."""
import torch

from adadet import ViTADN


def test_group_output_is_the_last_running_block_of_the_group_at_every_depth():
    torch.manual_seed(0)
    vit = ViTADN(embed_dim=32, num_blocks=8, num_heads=2, patch_size=8, pretrain_img_size=32)
    vit.eval()
    image = torch.randn(1, 3, 32, 48)
    block_out, group_out = {}, {}
    for i, block in enumerate(vit.blocks):
        block.register_forward_hook(lambda m, a, out, i=i: block_out.__setitem__(i, out))
    for name, module in vit.stage_outputs().items():
        module.register_forward_hook(lambda m, a, out, n=name: group_out.__setitem__(n, out))
    assert list(vit.stage_outputs()) == ["group1", "group2", "group3", "group4"]
    with torch.no_grad():
        for depth in ("FFFF", "TFTF", "TTTT"):
            vit.set_depth(depth)
            block_out.clear()
            vit(image)
            for g, skips in enumerate(depth):
                last = 2 * g if skips == "T" else 2 * g + 1  # 2 blocks a group, 1 skippable
                assert (2 * g + 1 in block_out) == (skips == "F")
                expected = block_out[last].permute(0, 3, 1, 2)  # tokens -> (N, C, rows, cols)
                assert torch.equal(group_out[f"group{g + 1}"], expected), (depth, g)
    assert group_out["group1"].shape == (1, 32, 4, 6)
    # no parameters, so checkpoints keep their keys
    assert not any("group_outputs" in k for k in vit.state_dict())
