# One training run per (training identity, |D|): run.json beside the model, EMA snapshots, resumable state.


localrules:
    run_settings,


rule run_settings:
    output:
        RUN_JSON,
    params:
        settings=run_json_of,
    log:
        RESULTS / "logs" / "run_settings" / f"{JOB}.log",
    threads: 1
    resources:
        mem_mb=500,
        runtime=capped(5),
    conda:
        ENV
    script:
        "../scripts/run_settings.py"


rule train:
    input:
        settings=RUN_JSON,
        subset=get_subset,
    output:
        summary=TRAIN_JSON,
    log:
        RESULTS / "logs" / "train" / f"{JOB}.log",
    benchmark:
        RESULTS / "benchmarks" / "train" / f"{JOB}.tsv"
    threads: train_threads
    retries: TRAIN_RETRIES
    resources:
        mem_mb=train_mem_mb,
        runtime=train_runtime,
        gpu=train_gpus,
    conda:
        ENV
    script:
        "../scripts/train.py"
