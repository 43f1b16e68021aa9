# EMM search as checkpoint rounds: round k reads round k-1 and the scores of the sizes it asked for,
# and writes the next sizes (or done). Searches of different experiment values advance side by side.


localrules:
    emm_round,
    emm_result,


checkpoint emm_round:
    input:
        unpack(get_emm_round_inputs),
    output:
        RESULTS / layout.emm_round("{experiment}", "{value}", "{k}"),
    log:
        RESULTS / layout.log("emm", "{experiment}", "{value}", "round{k}"),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=capped(5),
    params:
        search=get_emm_search,
    script:
        "../scripts/emm_round.py"


rule emm_result:
    input:
        get_emm_final_round,
    output:
        RESULTS / layout.emm_result("{experiment}", "{value}"),
    log:
        RESULTS / layout.log("emm", "{experiment}", "{value}", "result"),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=500,
        runtime=capped(5),
    params:
        search=get_emm_search,
    script:
        "../scripts/emm_result.py"
