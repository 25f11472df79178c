"""Few-shot learning: how well digits are recognised from k images per class, and how well an
embedding learned on digits 0-4 recognises digits 5-9 from a few examples (`digits fewshot`),
and nearest-prototype prediction with user-given classes (`digits fewshot-predict`).

    from digits.fewshot.experiment import run_fewshot
    run_fewshot(FewShotConfig(), DataConfig(), out="docs/fewshot")
"""
