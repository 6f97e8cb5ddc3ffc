"""quality: PSNR, SSIM and perceptual-hash distance of renditions."""
