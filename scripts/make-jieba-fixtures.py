#!/usr/bin/env python3
"""Writes tests/fixtures/jieba/cases.json: what the reference's word chunking decides on Chinese
text, from the same PyPI libraries it uses (jieba 0.42.1, langid 1.1.6).

For each sentence: jieba's tokens (`jieba.lcut`, default dictionary, accurate mode, HMM on) and
langid's language (`langid.classify(text)[0]`). For a few (text, chunk_max_word_num) pairs, the
chunks that `prepare_chunk_text(..., chunk_method="word")` in the reference's
`examples/generation.py` returns (re-stated here: langid over the whole text, paragraphs on "\n\n",
zh words from jieba joined with "", other words from split(" ") joined with " ", "\n\n" after each
paragraph's last chunk).

Usage: pip install jieba==0.42.1 langid==1.1.6 && python3 scripts/make-jieba-fixtures.py
"""

import json
import logging
import os
import sys

import jieba
import langid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "jieba", "cases.json")
VOICE = os.path.join(ROOT, "..", "shared", "voices", "zh_man_sichuan.txt")

SENTENCES = [
    "我来到北京清华大学",
    "他来到了网易杭研大厦",
    "小明硕士毕业于中国科学院计算所，后在日本京都大学深造",
    "我爱北京天安门",
    "结婚的和尚未结婚的",
    "大家好，欢迎收听本期的跟李沐学AI。",
    "大家好, 欢迎收听本期的跟李沐学AI.",
    "今天的天气真不错，我们去公园散步吧！",
    "2023年10月1日，全国人民欢度国庆节。",
    "这台电脑的价格是3999.99元，打八折后是3199.99元。",
    "我用iPhone 15 Pro拍了一张照片，然后上传到了GitHub。",
    "Python和Rust都是很流行的编程语言。",
    "人工智能（AI）正在改变世界：从医疗到交通，无处不在。",
    "他说：“你好吗？”我说：“我很好，谢谢！”",
    "《红楼梦》是中国古典四大名著之一。",
    "一二三四五六七八九十",
    "这是一个测试……真的吗？",
    "研究生命的起源",
    "南京市长江大桥",
    "工信处女干事每月经过下属科室都要亲口交代24口交换机等技术性器件的安装工作",
    "永和服装饰品有限公司",
    "我们中出了一个叛徒",
    "上海自来水来自海上",
    "机器学习和深度学习是人工智能的重要分支。",
    "请拨打电话010-12345678或发送邮件到test@example.com。",
    "温度是25°C，湿度为60%。",
    "他跑了100米，用时9.58秒，打破了世界纪录。",
    "这个APP的下载量超过了1,000,000次。",
    "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。",
    "我今天很高兴\n明天也会很高兴",
    "第一段。\n\n第二段。",
    "  前面有空格，后面也有  ",
    "中英文混合 mixed text 在一起 together.",
    "Hello world, this is English with one 字.",
    "こんにちは世界",
    "欢迎来到C++和C#的世界",
    "价格：¥100，折扣：20%",
    "四川话听起来很有意思，巴适得板！",
    "他是一个非常优秀的工程师，擅长分布式系统和高性能计算。",
    "The quick brown fox 跳过了 the lazy dog.",
    "新版本v1.2.3已经发布，请升级到v2.0.1-beta。",
    "请打开config_file.json文件，修改max-word-num参数。",
    "他去医院做了B超检查，结果一切正常。",
    "增长了12.5%，比去年多了3.2个百分点",
    "网址是www.example.com.cn，端口8080",
]

# (text, chunk_max_word_num): zh texts longer than the limit, one not-zh text, one two-paragraph text.
CHUNK_CASES = [
    ("大家好, 欢迎收听本期的跟李沐学AI. 今天我们来聊一聊大模型的训练和推理.", 5),
    ("今天的天气真不错, 我们去公园散步吧! 公园里有很多花, 还有一个湖.", 4),
    ("第一段, 有一些字.\n\n第二段, 也有一些字.", 3),
    ("Hello world, this is a test of word chunks.", 3),
    ("春眠不觉晓, 处处闻啼鸟. 夜来风雨声, 花落知多少.", 1),
]


def chunk_words(text, max_word_num):
    language = langid.classify(text)[0]
    chunks = []
    for paragraph in text.split("\n\n"):
        if language == "zh":
            words, sep = list(jieba.cut(paragraph, cut_all=False)), ""
        else:
            words, sep = paragraph.split(" "), " "
        for i in range(0, len(words), max_word_num):
            chunks.append(sep.join(words[i : i + max_word_num]))
        chunks[-1] += "\n\n"
    return language, chunks


def main():
    jieba.setLogLevel(logging.WARNING)
    sentences = list(SENTENCES)
    if os.path.isfile(VOICE):
        with open(VOICE, encoding="utf-8") as f:
            sentences.append(f.read().strip())
    else:
        print(f"note: {VOICE} not found; its transcript is not a case", file=sys.stderr)
    cases = [
        {"text": s, "tokens": jieba.lcut(s), "langid": langid.classify(s)[0]} for s in sentences
    ]
    chunk_cases = []
    for text, n in CHUNK_CASES:
        language, chunks = chunk_words(text, n)
        chunk_cases.append(
            {"text": text, "chunk_max_word_num": n, "langid": language, "chunks": chunks}
        )
    out = {
        "versions": {"jieba": jieba.__version__, "langid": "1.1.6", "python": sys.version.split()[0]},
        "cases": cases,
        "chunk_cases": chunk_cases,
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {len(cases)} token cases and {len(chunk_cases)} chunk cases to {OUT}")


if __name__ == "__main__":
    main()
