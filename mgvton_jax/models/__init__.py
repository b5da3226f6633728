"""The MG-VTON networks (Flax NNX), built from one config section each.

Every network's constructor takes its input channel counts (derived by the stage that uses
it from the table of model inputs) and then its size section of the config, as in
`ResnetGenerator(in_channels, out_channels, **config.model.parsing, dtype=..., rngs=...)`.
The stages (`mgvton_jax.stages`) decide which networks a stage has and what they see.

- `generator.ResnetGenerator`: pix2pixHD GlobalGenerator (stage I, refinement).
- `discriminator.MultiscaleDiscriminator`: pix2pixHD multiscale PatchGAN.
- `gmm.GeometricMatcher`: CP-VTON's geometric matching module (TPS offsets).
- `warp_gan.WarpGANGenerator`: parsing matcher + two encoders + soft gate + trunk + decoder.
- `refine.compose`: the refinement render's composition (paper Eq. 6).
- `vgg`: the frozen VGG19 of the perceptual loss.

Compute dtype and memory: every network takes `dtype` (parameters and BatchNorm statistics
stay float32; generator outputs and transformation parameters are float32) and the generators
take `remat` (rematerialise the residual blocks of the trunk). Inference mode of BatchNorm:
`nnx.view(model, use_running_average=True)` (layers.py).
"""
