-- Quality targets (R9.2): a preset may ask for the smallest quality whose SSIM reaches
-- a target instead of a fixed quality. The target is kept beside the quality the
-- renderer chose and the scores it measured (quality, psnr_db, ssim, hash_distance),
-- so reads return them without measuring again. 0 means a fixed quality.
ALTER TABLE renditions
    ADD COLUMN min_ssim double precision NOT NULL DEFAULT 0
        CHECK (min_ssim >= 0 AND min_ssim < 1);
