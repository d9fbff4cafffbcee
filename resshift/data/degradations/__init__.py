"""Degradations that turn HR images into LR test inputs: MATLAB bicubic and Real-ESRGAN."""
