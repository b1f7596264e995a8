"""A grader in five lines: `rft grade ... --plugin examples/graders/five_lines.py` with `- name: says_answer`."""

import rft


@rft.grader(description="1.0 when the reference answer appears in the completion.")
def says_answer(completion: str, answer: str) -> bool:
    return str(answer).strip() in completion


rft_register_graders = rft.hookimpl(lambda register: register(says_answer))
