"""The offload example's real computation: a small MLP trained on the 8x8 digits, the bytes a
sensor sends for an image, and the model's answers on images as they arrived. No clock, no `sim`."""
