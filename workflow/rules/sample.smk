# Sample every snapshot of a run with the EDM Heun sampler (or the closed-form optimum of its subset).
# The samples of one sampler setting live under the run, so a new setting never retrains.


rule sample:
    input:
        settings=RUN_JSON,
        subset=get_subset,
        trained=get_trained,
    output:
        **SAMPLE_FILES,
    log:
        RESULTS / layout.log("sample", f"{JOB}-{{sample_id}}"),
    benchmark:
        RESULTS / layout.benchmark("sample", f"{JOB}-{{sample_id}}")
    retries: SAMPLE_RETRIES
    conda:
        ENV
    threads: PLAN.job_threads()
    resources:
        mem_mb=sample_mem_mb,
        runtime=sample_runtime,
        attempt=lambda w, attempt: attempt,  # a job's failure stops its later attempts (steps.attempts)
        gpu=PLAN.job_gpus(),
    params:
        sample=sample_settings_of,
    script:
        "../scripts/sample.py"
