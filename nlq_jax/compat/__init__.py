"""Readers of other frameworks' files, with no dependency on those frameworks.

`torch_checkpoint.load_state_dict` reads the tensors of a `torch.save` file (.pth, .pth.tar)
as numpy arrays, without torch and without executing anything from the file.
"""
