# Memorization of every snapshot's samples (d1/d2 < threshold), and the max over snapshots. The scores
# of one scoring setting live under the samples they score, so a new threshold never resamples.


rule score:
    input:
        samples=get_samples,
        subset=get_subset,
    output:
        **SCORE_FILES,
    log:
        RESULTS / layout.log("score", f"{JOB}-{{sample_id}}-{{score_id}}"),
    benchmark:
        RESULTS / layout.benchmark("score", f"{JOB}-{{sample_id}}-{{score_id}}")
    retries: 1
    conda:
        ENV
    threads: PLAN.job_threads()
    resources:
        mem_mb=score_mem_mb,
        runtime=score_runtime,
        gpu=PLAN.job_gpus(),
    params:
        score=score_settings_of,
    script:
        "../scripts/score.py"
