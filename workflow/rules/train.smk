# One training run per (training identity, |D|): run.json beside the model, EMA snapshots, resumable state.


localrules:
    run_settings,


rule run_settings:
    output:
        RUN_JSON,
    log:
        RESULTS / layout.log("run_settings", JOB),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=500,
        runtime=capped(5),
    params:
        settings=run_json_of,
    script:
        "../scripts/run_settings.py"


rule train:
    input:
        settings=RUN_JSON,
        subset=get_subset,
    output:
        summary=TRAIN_JSON,
    log:
        RESULTS / layout.log("train", JOB),
    benchmark:
        RESULTS / layout.benchmark("train", JOB)
    retries: TRAIN_RETRIES
    conda:
        ENV
    threads: PLAN.train_threads()
    resources:
        mem_mb=train_mem_mb,
        runtime=train_runtime,
        attempt=lambda w, attempt: attempt,  # a job's failure stops its later attempts (steps.attempts)
        gpu=PLAN.train_gpus(),
    script:
        "../scripts/train.py"
