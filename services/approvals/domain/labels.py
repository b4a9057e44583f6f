"""Chinese names of the codes records' claims carry (a licence's status, offence categories,
violation kinds, education levels, registration statuses, purchase-eligibility reasons), so a
Chinese explanation reads "驾驶证状态：有效", not "valid" (issue 14). English explanations keep the
codes, which are the contract's words. A code without a name here shows as itself: the completeness
of the vocabularies the case types explain is tested against records' catalogue."""

from __future__ import annotations

from typing import Final

ZH: Final[dict[str, str]] = {
    # Licence and permit status (records' _PERMIT_STATUS).
    "valid": "有效",
    "suspended": "暂扣",
    "revoked": "吊销",
    "expired": "过期",
    # Enterprise registration status.
    "active": "存续",
    "cancelled": "注销",
    # Offence categories (OFFENCE_CATEGORIES).
    "violent": "暴力犯罪",
    "traffic_crime": "交通肇事罪",
    "dangerous_driving": "危险驾驶",
    "drunk_driving": "醉酒驾驶",
    "drug_driving": "毒驾",
    "drug": "毒品犯罪",
    "property": "财产犯罪",
    "fraud": "诈骗",
    "corruption": "贪污贿赂",
    "public_order": "妨害社会管理秩序",
    "other": "其他",
    # Traffic violation kinds (VIOLATION_KINDS); the crimes' names above serve both.
    "speeding": "超速",
    "red_light": "闯红灯",
    "drink_driving": "饮酒后驾驶",
    "hit_and_run": "肇事逃逸",
    "unlicensed_driving": "无证驾驶",
    "phone_use": "驾车使用手机",
    "seat_belt": "未系安全带",
    "overloading": "超载",
    "illegal_parking": "违法停车",
    # Education levels (EDUCATION_LEVELS).
    "primary": "小学",
    "junior_secondary": "初中",
    "senior_secondary": "高中",
    "vocational": "中专",
    "associate": "大专",
    "bachelor": "本科",
    "master": "硕士研究生",
    "doctorate": "博士研究生",
    # Purchase eligibility reasons (housing_purchase_eligibility.reason).
    "no_purchase_restriction": "不限购",
    "local_household_under_limit": "本地户籍家庭未达限购套数",
    "local_household_limit_reached": "本地户籍家庭已达限购套数",
    "non_local_social_insurance_met": "非本地户籍家庭社保缴纳年限已满足",
    "non_local_social_insurance_not_met": "非本地户籍家庭社保缴纳年限不足",
}


def zh(code: str) -> str:
    """The Chinese name of ``code``, or ``code`` itself when it has none."""
    return ZH.get(code, code)
